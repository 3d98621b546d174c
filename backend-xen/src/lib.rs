//! backend-xen (being written)
