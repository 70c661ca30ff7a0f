//! Not yet implemented.

use super::error;
use crate::resp::Reply;
use crate::store::{Context, Outcome};

pub async fn run(_context: &mut Context<'_>, name: &str, _a: &[Vec<u8>]) -> Outcome<Reply> {
    error(&format!("ERR '{name}' is not implemented yet"))
}
