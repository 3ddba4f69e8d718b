//! `cargo xtask setup|build|test|bench|demo|deb`.
fn main() {}
