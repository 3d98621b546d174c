//! ptdump
