//! A block of sentence vectors, row-major, and the one access trait exact search needs so
//! that in-memory and memory-mapped vectors are searched by the same code.

use std::borrow::Cow;

/// `len` vectors of `dim` floats, one row per text, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    dim: usize,
    data: Vec<f32>,
}

impl Embeddings {
    pub fn new(dim: usize, data: Vec<f32>) -> Self {
        assert!(dim > 0, "embedding dimension must be positive");
        assert_eq!(data.len() % dim, 0, "data length {} is not a multiple of dim {dim}", data.len());
        Self { dim, data }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// Overwrites row `i` (e.g. with a re-encoded document).
    pub fn set_row(&mut self, i: usize, vector: &[f32]) {
        assert_eq!(vector.len(), self.dim, "vector of {} floats for rows of {}", vector.len(), self.dim);
        self.data[i * self.dim..(i + 1) * self.dim].copy_from_slice(vector);
    }
}

/// Rows of vectors that can be read in contiguous blocks as f32.
pub trait VectorRows: Sync {
    fn dim(&self) -> usize;
    fn len(&self) -> usize;
    /// Rows `start..end`, row-major; borrowed when stored as f32, converted when f16.
    fn rows(&self, start: usize, end: usize) -> Cow<'_, [f32]>;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl VectorRows for Embeddings {
    fn dim(&self) -> usize {
        self.dim
    }
    fn len(&self) -> usize {
        Embeddings::len(self)
    }
    fn rows(&self, start: usize, end: usize) -> Cow<'_, [f32]> {
        Cow::Borrowed(&self.data[start * self.dim..end * self.dim])
    }
}

/// Cosine of two vectors (not assuming unit length).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(f32::MIN_POSITIVE)
}
