//! The libpcap tap: turns captured packets (live or from files) into Observations.
//! Link layers, IP fragments and DNS over TCP are reassembled here; every record decision stays in core.
