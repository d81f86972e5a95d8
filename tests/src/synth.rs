//! Deterministic synthesized weights (being written).
