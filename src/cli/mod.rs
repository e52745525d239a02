//! The binary's own modules: the command line ([`args`]), what goes to stderr
//! ([`logging`]) and the allocator ([`alloc`]). The library knows none of them.

pub mod alloc;
pub mod args;
pub mod logging;
