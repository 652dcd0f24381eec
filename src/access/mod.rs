//! Access control: CIDR lists, reputation, geofence, admission and port-exposure policy.
//!
//! - [`cidr`]: allow/deny lists of IPv4 and IPv6 networks, longest prefix wins.
//! - [`reputation`]: a decaying score per client from events, with a hard cap on clients.

pub mod cidr;
pub mod reputation;
