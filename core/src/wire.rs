//! A lenient, zero-copy walker over DNS wire messages.
//! Every bound is checked, compression pointers only go backwards, and no input can make it panic.
