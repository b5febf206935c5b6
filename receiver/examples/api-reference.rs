//! Prints the Markdown API reference generated from the OpenAPI document:
//! `cargo run -p receiver --example api-reference > docs/api-reference.md`.

fn main() {
    print!("{}", receiver::openapi::markdown());
}
