//! Rate limiting with time passed in and memory bounded by a hard cap.
