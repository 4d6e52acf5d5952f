//! The orchestrator (filled in next).
/// placeholder
pub struct Orchestrator;
/// placeholder
pub struct Plan;
