//! triad-sim
