//! backend-vmi (being written)
