//! Request handlers: each parses, calls one core function, and maps the reply.

pub mod admin;
pub mod openai;
pub mod ops;
pub mod overview;
