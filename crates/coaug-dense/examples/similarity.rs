//! Fetches the default encoder (if needed) and prints the cosine of two sentences:
//! `cargo run --release -p coaug-dense --example similarity -- "text a" "text b"`.

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (a, b) = match args.as_slice() {
        [a, b] => (a.as_str(), b.as_str()),
        _ => ("A man is eating food.", "A man is eating a piece of bread."),
    };
    let dir = coaug_dense::default_encoder()?;
    let encoder = coaug_dense::SentenceEncoder::load(&dir)?;
    let v = encoder.encode_documents(&[a, b], false)?;
    println!("{:.4}  ({} | {})", coaug_dense::cosine(v.row(0), v.row(1)), a, b);
    Ok(())
}
