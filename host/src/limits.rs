//! Every named limit and default of the host, with its unit, in one place.
//!
//! Modules take these as defaults of their config structs; nothing else
//! hard-codes a limit.
