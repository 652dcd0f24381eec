//! Access control: CIDR lists, reputation, geofence, admission and port-exposure policy.
//!
//! - [`cidr`]: allow/deny lists of IPv4 and IPv6 networks, longest prefix wins.

pub mod cidr;
