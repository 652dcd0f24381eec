//! Access control: CIDR lists, reputation, geofence, admission and port-exposure policy.
//!
//! - [`cidr`]: allow/deny lists of IPv4 and IPv6 networks, longest prefix wins.
//! - [`exposure`]: the ports a deployment may expose, an audit of its listeners, and an
//!   nftables ruleset that opens exactly those ports.
//! - [`limits`]: a plain-text limits file (rates, concurrency, bans, allow/deny) for
//!   [`admission`].
//! - [`geofence`]: allowed and denied countries over a country lookup, and a CSV range table.
//! - [`reputation`]: a decaying score per client from events, with a hard cap on clients.

pub mod admission;
pub mod cidr;
pub mod exposure;
pub mod geofence;
pub mod limits;
pub mod reputation;
