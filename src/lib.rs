//! triad: facade
