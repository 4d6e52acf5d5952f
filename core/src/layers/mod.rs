//! Layers around providers (filled in next).
