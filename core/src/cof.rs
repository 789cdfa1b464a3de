//! Passive DNS Common Output Format: one JSON object per RRset, one line each.
