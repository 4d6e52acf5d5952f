//! Renderers for the next steps (filled in next).
