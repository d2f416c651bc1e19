//! Sans-IO VRRP (RFC 3768 v2, RFC 5798 v3): wire format and the per-instance state machine.
//!
//! No sockets, no clock reads, no async runtime: callers feed packets and time in and carry the
//! returned actions out. That keeps every timing case exact and testable on a simulated clock.
