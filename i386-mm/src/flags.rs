//! Which entry flags each kind of mapping may carry.

use paravirt_core::{PagingMode, PteFlags};

/// Flags a 4 KiB leaf mapping may carry in mode `M`: the user ones (`USER`, no `GLOBAL`) or
/// the kernel ones (`GLOBAL`, no `USER`); `NX` only in PAE. `PSE` never (a leaf is 4 KiB).
pub(crate) fn leaf_flags_allowed<M: PagingMode>(user: bool) -> PteFlags {
    let common = PteFlags::PRESENT
        | PteFlags::RW
        | PteFlags::PWT
        | PteFlags::PCD
        | PteFlags::ACCESSED
        | PteFlags::DIRTY
        | if M::PAE { PteFlags::NX } else { PteFlags::empty() };
    common | if user { PteFlags::USER } else { PteFlags::GLOBAL }
}
