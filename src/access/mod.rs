//! Access control: CIDR lists, reputation, geofence, admission and port-exposure policy.
