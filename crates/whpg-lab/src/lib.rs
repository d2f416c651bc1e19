//! Network-namespace lab for tests: hosts, links, faults and processes, always torn down.
