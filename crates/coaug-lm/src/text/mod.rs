//! Text in and out of the model: the tokenizer with its stop tokens (`tokenizer`) and the chat
//! template read from the model and rendered with minijinja (`chat`).

pub mod chat;
pub mod tokenizer;
