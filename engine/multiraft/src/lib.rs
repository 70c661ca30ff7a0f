//! `strata-multiraft`: drives many Raft groups of one node on the runtime layer.
