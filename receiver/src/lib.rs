//! The lead-intake HTTP receiver.
