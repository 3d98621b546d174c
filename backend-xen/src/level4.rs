//! The hypervisor side in 4-level mode: Xen's rules for a 64-bit PV guest.
//!
//! The i386 model ([`Hypervisor`](crate::Hypervisor)) can never meet a real Xen: no i386 PV
//! guest runs on the Xen these machines have. A 64-bit PV guest does, so this module models
//! the 4-level rules of `xen/arch/x86/mm.c` (Xen 4.17) for a 64-bit PV domain, and the
//! oracle (`xen-oracle`, `cargo xtask xen-oracle`) measures it against the real hypervisor:
//! the same operations through [`Pv64`] and through Xen must print the same lines.
//!
//! What it models, with the function of `mm.c` each rule comes from:
//!
//! | rule | Xen |
//! | --- | --- |
//! | per frame: type (none, writable, L1..L4), type count, validated, pinned, linear count, TLB stamp | `page_info.u.inuse.type_info`, `linear_pt_count`, `tlbflush_timestamp` |
//! | a type is taken at count 0 only; a table type validates its entries (`promote_lN_table`), dropping the last reference devalidates (`demote_lN_table`) | `_get_page_type`, `_put_page_type` |
//! | a validation that fails leaves the frame untyped (an L1, or an upper table failing at its first entry) or partial (an upper table failing later: torn down at the end of the call, or lost for good when a nested failure replaced it) | `validate_page`, `old_guest_table` |
//! | L1 entry: any flag (the domain has I/O capabilities), a frame the domain does not own `EBUSY`, a writable mapping needs a writable type (`EBUSY` otherwise) | `get_page_from_l1e` |
//! | L2..L4 entry: no `PWT`, `PCD`, `PSE`, `G` (`EINVAL`); the frame must be owned (`EINVAL`) and take the next level's type, or be a read-only linear entry | `get_page_from_lNe`, `get_lN_linear_pagetable` |
//! | validation sets `_PAGE_USER` (and in an L1 the guest-kernel bit 52 or `G`), an L4 entry `_PAGE_ACCESSED` too | `adjust_guest_lNe` |
//! | L4 slots 256..271 are Xen's: written by validation, refused to the guest | `init_xen_l4_slots`, `mod_l4_entry` |
//! | `mmu_update` of an entry changing only `NX`, `AVAIL`, `G`, `D`, `A`, `U` skips validation | `FASTPATH_FLAG_WHITELIST` |
//! | `mmu_update` of a page that is not a validated table: a plain store; of a frame not owned: `EINVAL` | `do_mmu_update` |
//! | an upper-level update, a base pointer load, `TLB_FLUSH_LOCAL` flush the TLB; an L1 update does not | `do_mmu_update`, `new_guest_cr3`, `flush_tlb_local` |
//! | a type change of a frame whose last reference went after the last flush flushes the TLB | `_get_page_type`, `NEED_FLUSH` |
//! | `NEW_BASEPTR` takes an L4 reference (validating an unpinned root) and drops the old root's | `new_guest_cr3` |
//! | pin of a pinned table or a frame not owned, unpin of an unpinned one: `EINVAL` | `do_mmuext_op` |
//! | `update_va_mapping` edits the L1 entry the current tables reach (`EINVAL` if none) | `__do_update_va_mapping` |
//!
//! What it leaves out: preemption and continuations (each call runs to its end), MMIO
//! frames, grant mappings, other domains, 32-bit PV guests (see the crate's `README.md` for
//! the differences between this mode and the i386 model).

use crate::error::SetupError;
use core::fmt;
use core::ptr::NonNull;
use i386_paging::{FrameMap, PhysMem, Record};
use paravirt_core::sync::Lock;
use paravirt_core::Pfn;

/// Entries in a table at every level.
pub const ENTRIES: u32 = 512;
/// The machine-address bits of an entry (bits 12..51).
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// The flag bits of an entry (bits 0..11 and 52..63).
const FLAG_MASK: u64 = !ADDR_MASK;

const P: u64 = 0x001;
const RW: u64 = 0x002;
const US: u64 = 0x004;
const PWT: u64 = 0x008;
const PCD: u64 = 0x010;
const A: u64 = 0x020;
const D: u64 = 0x040;
const PSE: u64 = 0x080;
const G: u64 = 0x100;
const AVAIL: u64 = 0xe00;
const AVAIL_HIGH: u64 = 0x7ff << 52;
const NX: u64 = 1 << 63;
/// `_PAGE_GUEST_KERNEL`: bit 52, set by Xen on the guest kernel's L1 entries.
pub const GUEST_KERNEL: u64 = 1 << 52;

/// `base_disallow_mask`: every flag but present, RW, user, accessed, dirty, the available
/// bits and NX.
const BASE_DISALLOW: u64 = FLAG_MASK & !(P | RW | US | A | D | AVAIL | AVAIL_HIGH | NX);
/// `l1_disallow_mask` of a domain with I/O capabilities (dom0): also `G` and the cache
/// attributes are allowed, which leaves nothing.
const L1_DISALLOW: u64 = BASE_DISALLOW & !G & !(PWT | PCD | PSE);
/// `L2_DISALLOW_MASK`, `l3_disallow_mask` (64-bit), `L4_DISALLOW_MASK`: `PWT`, `PCD`, `PSE`, `G`.
const UPPER_DISALLOW: u64 = BASE_DISALLOW;
/// Flags a guest may change without the entry being validated again.
const FASTPATH_WHITELIST: u64 = NX | AVAIL_HIGH | AVAIL | G | D | A | US;

/// First and last L4 slot Xen keeps for itself.
const XEN_SLOTS: core::ops::RangeInclusive<u32> = 256..=271;

/// `-EINVAL`.
pub const EINVAL: i64 = -22;
/// `-EBUSY`.
pub const EBUSY: i64 = -16;
/// `-ENOSYS`.
pub const ENOSYS: i64 = -38;

/// The type of a frame (`PGT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Type64 {
    /// No type (`PGT_none`).
    #[default]
    None,
    /// An L1 page table.
    L1,
    /// An L2 page table (page directory).
    L2,
    /// An L3 page table.
    L3,
    /// An L4 page table (a root).
    L4,
    /// Mapped writable (`PGT_writable_page`).
    Writable,
}

impl Type64 {
    /// The table type of a level (1..=4).
    pub const fn table(level: u8) -> Type64 {
        match level {
            1 => Type64::L1,
            2 => Type64::L2,
            3 => Type64::L3,
            _ => Type64::L4,
        }
    }

    /// The level of a table type (0 for none and writable).
    pub const fn level(self) -> u8 {
        match self {
            Type64::L1 => 1,
            Type64::L2 => 2,
            Type64::L3 => 3,
            Type64::L4 => 4,
            Type64::None | Type64::Writable => 0,
        }
    }

    /// Whether this is a page-table type.
    pub const fn is_table(self) -> bool {
        self.level() != 0
    }

    /// Short lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            Type64::None => "none",
            Type64::L1 => "l1",
            Type64::L2 => "l2",
            Type64::L3 => "l3",
            Type64::L4 => "l4",
            Type64::Writable => "writable",
        }
    }
}

impl fmt::Display for Type64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a 64-bit hypercall was refused; [`errno`](Refusal::errno) is the value Xen returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `EINVAL`: `ptr`, a pin, an unpin, a base pointer or an upper-level entry names a frame
    /// the domain does not own.
    NotOwned {
        /// The frame.
        pfn: Pfn,
    },
    /// `EBUSY`: an L1 entry maps a frame the domain does not own (`could_not_pin`).
    MapNotOwned {
        /// The frame.
        pfn: Pfn,
    },
    /// `EBUSY`: an L1 entry maps writable a frame that holds another type.
    WritableTyped {
        /// The frame mapped.
        pfn: Pfn,
        /// Its type.
        has: Type64,
    },
    /// `EINVAL`: the frame holds another type (or the entry is no valid linear entry).
    TypeConflict {
        /// The frame.
        pfn: Pfn,
        /// The type wanted.
        want: Type64,
        /// The type it has.
        has: Type64,
    },
    /// `EINVAL`: an entry sets flags its level forbids.
    BadFlags {
        /// The level of the table.
        level: u8,
        /// The forbidden flags set.
        flags: u64,
    },
    /// `EINVAL`: an update of one of Xen's L4 slots.
    XenSlot {
        /// The slot.
        index: u32,
    },
    /// `EINVAL`: pin of a pinned frame.
    AlreadyPinned {
        /// The frame.
        pfn: Pfn,
    },
    /// `EINVAL`: unpin of a frame that is not pinned.
    NotPinned {
        /// The frame.
        pfn: Pfn,
    },
    /// `EINVAL`: `update_va_mapping` of an address no validated L1 of the current tables maps.
    NoL1 {
        /// The virtual address.
        va: u64,
    },
    /// `ENOSYS`: a command this model (or Xen) does not know.
    BadCommand {
        /// The command.
        cmd: u32,
    },
}

impl Refusal {
    /// The negative errno Xen returns.
    pub const fn errno(&self) -> i64 {
        match self {
            Refusal::MapNotOwned { .. } | Refusal::WritableTyped { .. } => EBUSY,
            Refusal::BadCommand { .. } => ENOSYS,
            _ => EINVAL,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Refusal::NotOwned { pfn } => write!(f, "frame {pfn} is not the domain's"),
            Refusal::MapNotOwned { pfn } => write!(f, "L1 entry maps frame {pfn}, not the domain's"),
            Refusal::WritableTyped { pfn, has } => write!(f, "L1 entry maps {has} frame {pfn} writable"),
            Refusal::TypeConflict { pfn, want, has } => write!(f, "frame {pfn} wanted as {want} is {has}"),
            Refusal::BadFlags { level, flags } => write!(f, "L{level} entry sets forbidden flags {flags:#x}"),
            Refusal::XenSlot { index } => write!(f, "L4 slot {index} is Xen's"),
            Refusal::AlreadyPinned { pfn } => write!(f, "frame {pfn} is already pinned"),
            Refusal::NotPinned { pfn } => write!(f, "frame {pfn} is not pinned"),
            Refusal::NoL1 { va } => write!(f, "no validated L1 maps {va:#x}"),
            Refusal::BadCommand { cmd } => write!(f, "unknown command {cmd}"),
        }
    }
}

/// One frame's state (a snapshot of `type_info` and friends).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Info64 {
    /// The type (kept at count 0 until another type is taken).
    pub ty: Type64,
    /// References holding the type.
    pub count: u32,
    /// The type's contents are validated (`PGT_validated`).
    pub validated: bool,
    /// Pinned (`PGT_pinned`).
    pub pinned: bool,
    /// Linear entries this table holds (> 0) or linear uses of it (< 0).
    pub linear: i32,
    /// The TLB clock when the type count last dropped to zero.
    pub stamp: u32,
    /// Partially validated (`PGT_partial`): a validation that failed after its first entry
    /// left the references of the entries before it in place, for the clean-up at the end of
    /// the hypercall, or for good if Xen lost track of it (see [`Pv64::leaked`]).
    pub partial: bool,
    /// Entries whose references a partial table holds (`nr_validated_ptes`).
    pub nr_validated: u32,
}

impl Record for Info64 {
    const EMPTY: Info64 = Info64 {
        ty: Type64::None,
        count: 0,
        validated: false,
        pinned: false,
        linear: 0,
        stamp: 0,
        partial: false,
        nr_validated: 0,
    };

    /// `[type | validated << 8 | pinned << 9 | partial << 10 | nr_validated << 12, count,
    /// linear, stamp]` (`nr_validated` is at most 512): all zero for a frame never typed.
    fn to_words(self) -> [u32; 4] {
        let ty = match self.ty {
            Type64::None => 0,
            Type64::L1 => 1,
            Type64::L2 => 2,
            Type64::L3 => 3,
            Type64::L4 => 4,
            Type64::Writable => 5,
        };
        let w0 = ty
            | u32::from(self.validated) << 8
            | u32::from(self.pinned) << 9
            | u32::from(self.partial) << 10
            | self.nr_validated << 12;
        [w0, self.count, self.linear as u32, self.stamp]
    }

    fn from_words(w: [u32; 4]) -> Info64 {
        let ty = match w[0] & 0xff {
            1 => Type64::L1,
            2 => Type64::L2,
            3 => Type64::L3,
            4 => Type64::L4,
            5 => Type64::Writable,
            _ => Type64::None,
        };
        Info64 {
            ty,
            count: w[1],
            validated: w[0] & 1 << 8 != 0,
            pinned: w[0] & 1 << 9 != 0,
            linear: w[2] as i32,
            stamp: w[3],
            partial: w[0] & 1 << 10 != 0,
            nr_validated: w[0] >> 12,
        }
    }
}

/// TLB maintenance the hypervisor did since it was last asked ([`Pv64::take_tlb`]): what a
/// processor model must apply to its TLB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TlbWork {
    /// Full flushes.
    pub flushes: u32,
    /// The last single-address invalidation (`INVLPG`), if any since the last flush.
    pub invlpg: Option<u64>,
}

struct State {
    /// Xen's `frame_table`: an [`Info64`] per frame of the machine, reserved at construction.
    f: FrameMap<Info64>,
    /// Frames below this are the domain's; the rest of RAM is not.
    owned: u32,
    base: Option<Pfn>,
    clock: u32,
    cpu_time: u32,
    tlb: TlbWork,
    /// The partially validated table the current hypercall leaves for clean-up
    /// (`current->arch.old_guest_table`).
    pending: Option<Pfn>,
    /// Partial tables Xen lost track of.
    leaked: u32,
}

impl State {
    /// Frame `i`'s record (all zero beyond the machine). O(1).
    fn get<M: PhysMem>(&self, mem: &M, i: usize) -> Info64 {
        self.f.get(mem, Pfn::new(i as u32))
    }

    /// Changes frame `i`'s record with `g` (nothing beyond the machine). O(1).
    fn with<M: PhysMem>(&mut self, mem: &M, i: usize, g: impl FnOnce(&mut Info64)) {
        // The table is reserved over the whole machine: the change allocates nothing, and a
        // frame beyond the machine has no record to change.
        let _ = self.f.update(mem, Pfn::new(i as u32), g);
    }

    /// Stamps frame `i` with the TLB clock (`tlbflush_timestamp`).
    fn stamp_now<M: PhysMem>(&mut self, mem: &M, i: usize) {
        let clock = self.clock;
        self.with(mem, i, |f| f.stamp = clock);
    }
}

/// The hypervisor for one 64-bit PV domain over the machine memory `M` (frames below
/// `owned` are the domain's, the rest of `M`'s RAM belongs to nobody). Its frame table (Xen's
/// `frame_table`: an [`Info64`] per frame) is a record per frame of the machine's RAM,
/// reserved in frames of `M` at construction, so every lookup is O(1) and no hypercall
/// allocates; [`free_frametable`](Self::free_frametable) gives it back.
///
/// Frame numbers are machine frame numbers: a PV guest's entries hold them.
pub struct Pv64<M: PhysMem> {
    st: Lock<State>,
    mem: M,
    xen_frame: Pfn,
}

impl<M: PhysMem> Pv64<M> {
    /// A hypervisor over `mem`; frames below `owned` belong to the domain; `xen_frame` (a
    /// frame the domain does not own) is what Xen's own L4 slots point at.
    ///
    /// The frame table takes one frame of `mem` per 256 frames of RAM, plus a directory frame.
    ///
    /// # Errors
    /// [`SetupError::OutOfMemory`] if `mem` cannot supply the frame table (every frame taken
    /// is given back).
    ///
    /// # Panics
    /// If `owned` or `xen_frame` lie outside `mem`'s RAM.
    pub fn new(mem: M, owned: u32, xen_frame: Pfn) -> Result<Self, SetupError> {
        let max = mem.max_pfn().as_u32();
        assert!(owned <= max && xen_frame.as_u32() < max, "frames outside RAM");
        let mut f = FrameMap::new();
        f.reserve(&mem, mem.max_pfn()).map_err(|_| SetupError::OutOfMemory)?;
        Ok(Pv64 {
            st: Lock::new(State {
                f,
                owned,
                base: None,
                clock: 1,
                cpu_time: 1,
                tlb: TlbWork::default(),
                pending: None,
                leaked: 0,
            }),
            mem,
            xen_frame,
        })
    }

    /// Gives the frame table's frames back to the machine memory (the model is done: every
    /// frame reads as never typed afterwards).
    pub fn free_frametable(&self) {
        self.st.lock().f.clear(&self.mem);
    }

    /// The machine memory.
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// The root loaded now.
    pub fn base(&self) -> Option<Pfn> {
        self.st.lock().base
    }

    /// A frame's state.
    pub fn info(&self, pfn: Pfn) -> Info64 {
        self.st.lock().get(&self.mem, pfn.as_usize())
    }

    /// Partially validated tables Xen lost track of so far: a nested validation failure
    /// replaced `old_guest_table` while it held another partial table, whose type reference
    /// then stays until the table is validated again (`promote_l3_table` /
    /// `promote_l4_table`: "it's safer to leak a type ref on production builds").
    pub fn leaked(&self) -> u32 {
        self.st.lock().leaked
    }

    /// The end of a hypercall: the partial table it left is torn down (`put_old_guest_table`).
    fn finish(&self, st: &mut State) {
        if let Some(p) = st.pending.take() {
            self.put_type(st, p, None);
        }
    }

    /// The TLB maintenance done since the last call, clearing it.
    pub fn take_tlb(&self) -> TlbWork {
        core::mem::take(&mut self.st.lock().tlb)
    }

    /// Reads entry `index` of frame `pfn`.
    ///
    /// # Panics
    /// If `pfn` is not a frame of the memory or `index >= 512`.
    pub fn read(&self, pfn: Pfn, index: u32) -> u64 {
        // SAFETY: `word` checks the index; the frame pointer is valid for 4096 bytes.
        unsafe { self.word(pfn, index).as_ptr().read_volatile() }
    }

    fn write(&self, pfn: Pfn, index: u32, val: u64) {
        // SAFETY: as in `read`; the hypervisor may write any frame.
        self.mem.privileged(|| unsafe { self.word(pfn, index).as_ptr().write_volatile(val) })
    }

    fn word(&self, pfn: Pfn, index: u32) -> NonNull<u64> {
        assert!(index < ENTRIES, "entry index {index}");
        // SAFETY: the frame is 4096 bytes; the offset stays inside it and is 8-aligned.
        unsafe { self.mem.frame_ptr(pfn).cast::<u64>().add(index as usize) }
    }

    /// The domain builder: makes `root` the domain's pinned, loaded root (validating its
    /// tree), as Xen does for dom0's initial tables.
    ///
    /// # Errors
    /// The refusal of the validation.
    pub fn build(&self, root: Pfn) -> Result<(), Refusal> {
        let mut st = self.st.lock();
        self.owned(&st, root)?;
        self.get_type(&mut st, root, Type64::L4)?;
        self.get_type(&mut st, root, Type64::L4)?;
        st.with(&self.mem, root.as_usize(), |f| f.pinned = true);
        st.base = Some(root);
        Ok(())
    }

    /// `HYPERVISOR_mmu_update` of one request: `ptr` is the machine address of the entry
    /// with the command in its low 3 bits.
    ///
    /// # Errors
    /// The refusal, as Xen's `do_mmu_update`.
    pub fn mmu_update(&self, ptr: u64, val: u64) -> Result<(), Refusal> {
        let mut st = self.st.lock();
        let r = self.mmu_update_one(&mut st, ptr, val);
        self.finish(&mut st);
        r
    }

    fn mmu_update_one(&self, st: &mut State, ptr: u64, val: u64) -> Result<(), Refusal> {
        let cmd = (ptr & 7) as u32;
        let preserve_ad = match cmd {
            0 | 3 => false,
            2 => true,
            1 => {
                // MMU_MACHPHYS_UPDATE: the frame must be the domain's (the M2P is not modelled).
                return self.owned(st, Pfn::new(((ptr & ADDR_MASK) >> 12) as u32)).map(|_| ());
            }
            _ => return Err(Refusal::BadCommand { cmd }),
        };
        let table = Pfn::new(((ptr & ADDR_MASK) >> 12) as u32);
        let i = self.owned(st, table)?;
        let index = ((ptr & 0xfff) >> 3) as u32;
        let info = st.get(&self.mem, i);
        if info.validated && info.count > 0 {
            match info.ty {
                Type64::L1 => self.mod_l1(st, table, index, val, preserve_ad),
                Type64::L2 | Type64::L3 | Type64::L4 => self.mod_upper(st, table, index, val, preserve_ad),
                Type64::Writable | Type64::None => {
                    self.write(table, index, val);
                    Ok(())
                }
            }
        } else {
            self.get_type(st, table, Type64::Writable)?;
            self.write(table, index, val);
            self.put_type(st, table, None);
            Ok(())
        }
    }

    /// `HYPERVISOR_mmuext_op` of one operation: `MMUEXT_PIN_L1_TABLE` (0) ..
    /// `MMUEXT_PIN_L4_TABLE` (3), `UNPIN_TABLE` (4), `NEW_BASEPTR` (5) with a frame number;
    /// `TLB_FLUSH_LOCAL` (6); `INVLPG_LOCAL` (7) with a virtual address.
    ///
    /// # Errors
    /// The refusal, as Xen's `do_mmuext_op`.
    pub fn mmuext_op(&self, cmd: u32, arg: u64) -> Result<(), Refusal> {
        let mut st = self.st.lock();
        let r = self.mmuext_one(&mut st, cmd, arg);
        self.finish(&mut st);
        r
    }

    fn mmuext_one(&self, st: &mut State, cmd: u32, arg: u64) -> Result<(), Refusal> {
        let pfn = Pfn::new(arg as u32);
        match cmd {
            0..=3 => {
                let i = self.owned(st, pfn)?;
                let ty = Type64::table(cmd as u8 + 1);
                self.get_type(st, pfn, ty)?;
                if st.get(&self.mem, i).pinned {
                    self.put_type(st, pfn, None);
                    return Err(Refusal::AlreadyPinned { pfn });
                }
                st.with(&self.mem, i, |f| f.pinned = true);
                Ok(())
            }
            4 => {
                let i = self.owned(st, pfn)?;
                if !st.get(&self.mem, i).pinned {
                    return Err(Refusal::NotPinned { pfn });
                }
                st.with(&self.mem, i, |f| f.pinned = false);
                self.put_type(st, pfn, None);
                Ok(())
            }
            5 => {
                if st.base == Some(pfn) {
                    Self::flush(st);
                    return Ok(());
                }
                self.owned(st, pfn)?;
                self.get_type(st, pfn, Type64::L4)?;
                let old = st.base.replace(pfn);
                Self::flush(st);
                if let Some(old) = old {
                    self.put_type(st, old, None);
                }
                Ok(())
            }
            6 => {
                Self::flush(st);
                Ok(())
            }
            7 => {
                st.tlb.invlpg = Some(arg);
                Ok(())
            }
            _ => Err(Refusal::BadCommand { cmd }),
        }
    }

    /// `HYPERVISOR_update_va_mapping(va, val, flags)`: the L1 entry that maps `va` in the
    /// current tables, updated as by `mmu_update`; then `UVMF_TLB_FLUSH` (1) or
    /// `UVMF_INVLPG` (2) (`UVMF_ALL`, 4, reaches the same single vCPU).
    ///
    /// # Errors
    /// [`Refusal::NoL1`] if no validated L1 maps `va`; otherwise as `mmu_update`.
    pub fn update_va_mapping(&self, va: u64, val: u64, flags: u64) -> Result<(), Refusal> {
        let mut st = self.st.lock();
        let r = self.uvm_one(&mut st, va, val, flags);
        self.finish(&mut st);
        r
    }

    fn uvm_one(&self, st: &mut State, va: u64, val: u64, flags: u64) -> Result<(), Refusal> {
        let (l1, index) = self.l1_of(st, va).ok_or(Refusal::NoL1 { va })?;
        let info = st.get(&self.mem, l1.as_usize());
        if !(info.validated && info.count > 0 && info.ty == Type64::L1) {
            return Err(Refusal::NoL1 { va });
        }
        self.mod_l1(st, l1, index, val, false)?;
        match flags & 3 {
            1 => Self::flush(st),
            2 => st.tlb.invlpg = Some(va),
            _ => {}
        }
        Ok(())
    }

    /// The L1 and index of the entry mapping `va` in the current tables (`map_guest_l1e`).
    fn l1_of(&self, st: &State, va: u64) -> Option<(Pfn, u32)> {
        let canonical_low = va < (1 << 47);
        let above_xen = va >= 0xffff_8800_0000_0000;
        if !(canonical_low || above_xen) {
            return None;
        }
        let mut table = st.base?;
        for shift in [39u32, 30, 21] {
            let e = self.read(table, ((va >> shift) & 511) as u32);
            if e & P == 0 || (shift != 39 && e & PSE != 0) {
                return None;
            }
            table = Pfn::new(((e & ADDR_MASK) >> 12) as u32);
            if table >= self.mem.max_pfn() {
                return None;
            }
        }
        self.owned(st, table).ok()?;
        Some((table, ((va >> 12) & 511) as u32))
    }

    /// The frame's index in the table, if the domain owns it (`get_page_from_mfn`).
    fn owned(&self, st: &State, pfn: Pfn) -> Result<usize, Refusal> {
        if pfn.as_u32() < st.owned {
            Ok(pfn.as_usize())
        } else {
            Err(Refusal::NotOwned { pfn })
        }
    }

    /// A full TLB flush: the clock ticks and this vCPU's flush time follows it.
    fn flush(st: &mut State) {
        st.clock += 1;
        st.cpu_time = st.clock;
        st.tlb.flushes += 1;
        st.tlb.invlpg = None;
    }

    /// `_get_page_type(pfn, want)`.
    fn get_type(&self, st: &mut State, pfn: Pfn, want: Type64) -> Result<(), Refusal> {
        let i = pfn.as_usize();
        let f = st.get(&self.mem, i);
        if f.count > 0 {
            if f.partial && f.ty == want && st.pending != Some(pfn) {
                // A partial table left behind: this reference takes over its validation,
                // continuing after the entries whose references it already holds.
                st.with(&self.mem, i, |f| f.partial = false);
                return self.validate(st, pfn, want, f.nr_validated);
            }
            if f.ty != want || !f.validated {
                return Err(Refusal::TypeConflict { pfn, want, has: f.ty });
            }
            st.with(&self.mem, i, |f| f.count += 1);
            return Ok(());
        }
        if f.ty != want {
            // A type change: flush if the last reference went since this vCPU's last flush.
            if f.stamp >= st.cpu_time {
                Self::flush(st);
            }
            st.with(&self.mem, i, |f| f.ty = want);
            st.with(&self.mem, i, |f| f.validated = false);
        }
        st.with(&self.mem, i, |f| f.count = 1);
        if st.get(&self.mem, i).validated || !want.is_table() {
            st.with(&self.mem, i, |f| f.validated = true);
            return Ok(());
        }
        st.with(&self.mem, i, |f| f.linear = 0);
        self.validate(st, pfn, want, 0)
    }

    /// `validate_page`: promotes the table from entry `start`; on a refusal the table is
    /// untyped, or, if the promotion left it partial, keeps its type and one reference until
    /// the end of the hypercall.
    fn validate(&self, st: &mut State, pfn: Pfn, want: Type64, start: u32) -> Result<(), Refusal> {
        let i = pfn.as_usize();
        match self.promote(st, pfn, want, start) {
            Ok(()) => {
                st.with(&self.mem, i, |f| f.validated = true);
                Ok(())
            }
            Err((e, partial)) => {
                if partial {
                    st.with(&self.mem, i, |f| f.partial = true);
                } else {
                    st.with(&self.mem, i, |f| f.count = 0);
                    st.with(&self.mem, i, |f| f.ty = Type64::None);
                }
                Err(e)
            }
        }
    }

    /// `_put_page_type(pfn)`, from the table `ptpg` if an entry of it held the reference.
    fn put_type(&self, st: &mut State, pfn: Pfn, ptpg: Option<Pfn>) {
        let i = pfn.as_usize();
        let f = st.get(&self.mem, i);
        debug_assert!(f.count > 0, "put of frame {pfn} without a type reference");
        if f.count == 0 {
            return;
        }
        let same = ptpg.is_some_and(|t| st.get(&self.mem, t.as_usize()).ty == f.ty);
        let dec_linear = |st: &mut State| {
            if let Some(t) = ptpg {
                st.with(&self.mem, i, |f| f.linear += 1);
                st.with(&self.mem, t.as_usize(), |f| f.linear -= 1);
            }
        };
        if f.count == 1 && f.partial {
            st.with(&self.mem, i, |f| f.partial = false);
            for idx in (0..f.nr_validated).rev() {
                if f.ty == Type64::L4 && XEN_SLOTS.contains(&idx) {
                    continue;
                }
                let e = self.read(pfn, idx);
                self.put_entry(st, pfn, f.ty.level(), e);
            }
            st.stamp_now(&self.mem, i);
            st.with(&self.mem, i, |f| f.count = 0);
            return;
        }
        if f.count == 1 {
            if f.ty.is_table() && f.validated {
                st.with(&self.mem, i, |f| f.validated = false);
                self.demote(st, pfn, f.ty);
                if same {
                    dec_linear(st);
                }
                st.stamp_now(&self.mem, i);
                st.with(&self.mem, i, |f| f.count = 0);
                return;
            }
            if !same {
                st.stamp_now(&self.mem, i);
            }
            st.with(&self.mem, i, |f| f.count = 0);
        } else {
            st.with(&self.mem, i, |f| f.count -= 1);
        }
        if same {
            dec_linear(st);
        }
    }

    /// `promote_lN_table`: takes the references of every entry, setting Xen's bits in each
    /// as it goes. On a refusal gives back the references taken and says whether the table
    /// keeps its type (an upper table that failed after its first entry).
    fn promote(&self, st: &mut State, table: Pfn, ty: Type64, start: u32) -> Result<(), (Refusal, bool)> {
        let level = ty.level();
        for idx in start..ENTRIES {
            if level == 4 && XEN_SLOTS.contains(&idx) {
                continue;
            }
            let e = self.read(table, idx);
            if e & P == 0 {
                continue;
            }
            let got = if level == 1 { self.get_l1e(st, e) } else { self.get_upper(st, table, level, e) };
            if let Err(err) = got {
                if level > 1 && idx > 0 {
                    // Partial: the references stay for the clean-up at the end of the call
                    // (`old_guest_table`). If that already holds a partial table, it is
                    // handed over when it is this entry's child, and lost otherwise.
                    let child = Pfn::new(((e & ADDR_MASK) >> 12) as u32);
                    let transferred = st.pending == Some(child);
                    if st.pending.is_some() && !transferred {
                        st.leaked += 1;
                    }
                    st.with(&self.mem, table.as_usize(), |f| f.nr_validated = idx + u32::from(transferred));
                    st.pending = Some(table);
                    return Err((err, true));
                }
                for back in (0..idx).rev() {
                    if level == 4 && XEN_SLOTS.contains(&back) {
                        continue;
                    }
                    let old = self.read(table, back);
                    self.put_entry(st, table, level, old);
                }
                return Err((err, false));
            }
            self.write(table, idx, adjust(level, e));
        }
        if level == 4 {
            for idx in XEN_SLOTS {
                let target = if idx == 258 { table } else { self.xen_frame };
                self.write(table, idx, (u64::from(target.as_u32()) << 12) | P | RW | A | D);
            }
        }
        Ok(())
    }

    /// `demote_lN_table`: drops the references every entry holds.
    fn demote(&self, st: &mut State, table: Pfn, ty: Type64) {
        let level = ty.level();
        for idx in (0..ENTRIES).rev() {
            if level == 4 && XEN_SLOTS.contains(&idx) {
                continue;
            }
            let e = self.read(table, idx);
            self.put_entry(st, table, level, e);
        }
    }

    /// Drops the references the entry `e` of a validated table at `level` holds.
    fn put_entry(&self, st: &mut State, table: Pfn, level: u8, e: u64) {
        if e & P == 0 {
            return;
        }
        let target = Pfn::new(((e & ADDR_MASK) >> 12) as u32);
        if level == 1 {
            if e & RW != 0 && target.as_u32() < st.owned {
                self.put_type(st, target, None);
            }
        } else if target != table {
            self.put_type(st, target, Some(table));
        }
    }

    /// `get_page_from_l1e`.
    fn get_l1e(&self, st: &mut State, e: u64) -> Result<(), Refusal> {
        let flags = e & FLAG_MASK & L1_DISALLOW;
        if flags != 0 {
            return Err(Refusal::BadFlags { level: 1, flags });
        }
        let pfn = Pfn::new(((e & ADDR_MASK) >> 12) as u32);
        if pfn.as_u32() >= st.owned {
            return Err(Refusal::MapNotOwned { pfn });
        }
        if e & RW != 0 {
            let has = st.get(&self.mem, pfn.as_usize()).ty;
            self.get_type(st, pfn, Type64::Writable).map_err(|_| Refusal::WritableTyped { pfn, has })?;
        }
        Ok(())
    }

    /// `get_page_from_l2e` / `l3e` / `l4e` for an entry of `table` at `level`.
    fn get_upper(&self, st: &mut State, table: Pfn, level: u8, e: u64) -> Result<(), Refusal> {
        let flags = e & FLAG_MASK & UPPER_DISALLOW;
        if flags != 0 {
            return Err(Refusal::BadFlags { level, flags });
        }
        let child = Pfn::new(((e & ADDR_MASK) >> 12) as u32);
        self.owned(st, child)?;
        match self.get_type(st, child, Type64::table(level - 1)) {
            Err(err) if err.errno() == EINVAL => {
                if self.linear(st, table, level, e, child) {
                    Ok(())
                } else {
                    Err(err)
                }
            }
            other => other,
        }
    }

    /// `get_lN_linear_pagetable`: a read-only entry of `table` naming a validated table of
    /// its own level (itself: no reference).
    fn linear(&self, st: &mut State, table: Pfn, level: u8, e: u64, child: Pfn) -> bool {
        if e & RW != 0 {
            return false;
        }
        if child == table {
            return true;
        }
        let (t, c) = (table.as_usize(), child.as_usize());
        if st.get(&self.mem, t).linear < 0 {
            return false;
        }
        st.with(&self.mem, t, |f| f.linear += 1);
        if st.get(&self.mem, c).linear > 0 {
            st.with(&self.mem, t, |f| f.linear -= 1);
            return false;
        }
        st.with(&self.mem, c, |f| f.linear -= 1);
        let cf = st.get(&self.mem, c);
        if !(cf.ty == Type64::table(level) && cf.validated && cf.count > 0) {
            st.with(&self.mem, c, |f| f.linear += 1);
            st.with(&self.mem, t, |f| f.linear -= 1);
            return false;
        }
        st.with(&self.mem, c, |f| f.count += 1);
        true
    }

    /// `mod_l1_entry`.
    fn mod_l1(&self, st: &mut State, table: Pfn, index: u32, val: u64, preserve_ad: bool) -> Result<(), Refusal> {
        let old = self.read(table, index);
        let mut new = val;
        if new & P != 0 {
            let flags = new & FLAG_MASK & L1_DISALLOW;
            if flags != 0 {
                return Err(Refusal::BadFlags { level: 1, flags });
            }
            new = adjust(1, new);
            if !changed(old, new) {
                self.store(table, index, old, new, preserve_ad);
                return Ok(());
            }
            self.get_l1e(st, new)?;
        }
        self.store(table, index, old, new, preserve_ad);
        self.put_entry(st, table, 1, old);
        Ok(())
    }

    /// `mod_l2_entry` / `mod_l3_entry` / `mod_l4_entry`, then the flush `do_mmu_update` does
    /// after an upper-level update, then the old entry's references (deferred in Xen to the
    /// end of the call: after the flush).
    fn mod_upper(&self, st: &mut State, table: Pfn, index: u32, val: u64, preserve_ad: bool) -> Result<(), Refusal> {
        let level = st.get(&self.mem, table.as_usize()).ty.level();
        if level == 4 && XEN_SLOTS.contains(&index) {
            return Err(Refusal::XenSlot { index });
        }
        let old = self.read(table, index);
        let mut new = val;
        if new & P != 0 {
            let flags = new & FLAG_MASK & UPPER_DISALLOW;
            if flags != 0 {
                return Err(Refusal::BadFlags { level, flags });
            }
            new = adjust(level, new);
            if !changed(old, new) {
                self.store(table, index, old, new, preserve_ad);
                Self::flush(st);
                return Ok(());
            }
            self.get_upper(st, table, level, new)?;
        }
        self.store(table, index, old, new, preserve_ad);
        Self::flush(st);
        self.put_entry(st, table, level, old);
        Ok(())
    }

    /// `UPDATE_ENTRY`: the store, keeping the old accessed and dirty bits if asked.
    fn store(&self, table: Pfn, index: u32, old: u64, new: u64, preserve_ad: bool) {
        let new = if preserve_ad { new | (old & (A | D)) } else { new };
        self.write(table, index, new);
    }
}

/// `l1e_has_changed` with the fast-path whitelist: whether the address or a flag outside
/// the whitelist differs.
const fn changed(old: u64, new: u64) -> bool {
    (old ^ new) & (ADDR_MASK | (FLAG_MASK & !FASTPATH_WHITELIST)) != 0
}

/// `adjust_guest_lNe` for a 64-bit guest: a present entry gets `_PAGE_USER`; in an L1 a
/// kernel mapping also gets the guest-kernel bit and a user mapping `G`; in an L4 also
/// `_PAGE_ACCESSED`.
const fn adjust(level: u8, e: u64) -> u64 {
    if e & P == 0 {
        return e;
    }
    match level {
        1 => {
            let mut e = e;
            if e & US == 0 {
                e |= GUEST_KERNEL | US;
            }
            if e & GUEST_KERNEL == 0 {
                e |= G | US;
            }
            e
        }
        4 => e | A | US,
        _ => e | US,
    }
}
