//! A 64-bit PV guest for real Xen: runs the oracle's page-table operations as hypercalls.
//!
//! Xen 4.17 boots it as dom0 (under `qemu-system-x86_64`, see `cargo xtask xen-oracle`). It
//! reads its jobs from its command line (`b` the battery, `rA-B` random seeds, `sSEED.MASK`
//! a shrunk sequence: [`xen_oracle::gen`]), runs each through the shared interpreter
//! ([`xen_oracle::interp`]) on the real hypervisor, prints every line on Xen's console with
//! the prefix `XO|`, and exits QEMU through `isa-debug-exit` (status 33 when every job ran).
//!
//! What the guest needs from Xen:
//! - The ELF notes (`.note.Xen`): guest OS, loader, `VIRT_BASE` = `PADDR_OFFSET` =
//!   `0xffffffff80000000`, entry point, hypercall page, PAE mode.
//! - `start_info` (in `rsi` at entry): the root Xen built and pinned (`pt_base`, a virtual
//!   address in the initial mapping), the frame list (`mfn_list`), the command line.
//! - The machine-to-physical table, mapped read-only at `0xffff800000000000`, to find the
//!   initial mapping's address of a boot page table.
//! - A trap table with a page-fault handler, so that reading through a mapping that does
//!   not work returns "fault" instead of killing the guest.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};
use core::ptr::{addr_of, addr_of_mut};
use xen_oracle::interp::Machine;
use xen_oracle::ops::Frame;
use xen_oracle::POOL;

/// Xen's `VIRT_BASE` for this image: the initial mapping starts here.
const VIRT_BASE: u64 = 0xffff_ffff_8000_0000;
/// The read-only machine-to-physical table of a 64-bit PV guest.
const M2P: u64 = 0xffff_8000_0000_0000;
/// `DOMID_SELF`.
const DOMID_SELF: u64 = 0x7ff0;

global_asm!(
    r#"
    .section .note.Xen, "a", @note
    .p2align 2
    .long 4, 61f - 60f, 6
    .asciz "Xen"
60: .asciz "linux"
61: .p2align 2
    .long 4, 63f - 62f, 5
    .asciz "Xen"
62: .asciz "xen-3.0"
63: .p2align 2
    .long 4, 65f - 64f, 8
    .asciz "Xen"
64: .asciz "generic"
65: .p2align 2
    .long 4, 67f - 66f, 3
    .asciz "Xen"
66: .quad 0xffffffff80000000
67: .p2align 2
    .long 4, 69f - 68f, 4
    .asciz "Xen"
68: .quad 0xffffffff80000000
69: .p2align 2
    .long 4, 71f - 70f, 1
    .asciz "Xen"
70: .quad _start
71: .p2align 2
    .long 4, 73f - 72f, 2
    .asciz "Xen"
72: .quad hypercall_page
73: .p2align 2
    .long 4, 75f - 74f, 9
    .asciz "Xen"
74: .asciz "yes"
75: .p2align 2

    .section .hypercall_page, "ax"
    .p2align 12
    .globl hypercall_page
hypercall_page:
    .fill 4096, 1, 0xcc

    .section .text.entry, "ax"
    .globl _start
_start:
    lea rsp, [rip + {stack} + {stack_size}]
    mov rdi, rsi
    call {main}
    ud2

    .text
    .globl xo_probe_read
xo_probe_read:
    mov byte ptr [rip + {in_probe}], 1
    mov [rip + {probe_rsp}], rsp
    mov rax, [rdi]
    mov edx, 1
    mov byte ptr [rip + {in_probe}], 0
    ret

    .globl xo_page_fault
xo_page_fault:
    cmp byte ptr [rip + {in_probe}], 0
    je 80f
    mov byte ptr [rip + {in_probe}], 0
    mov rsp, [rip + {probe_rsp}]
    xor eax, eax
    xor edx, edx
    ret
80: and rsp, -16
    call {unexpected}
    ud2
"#,
    stack = sym STACK,
    stack_size = const STACK_SIZE,
    main = sym guest_main,
    in_probe = sym IN_PROBE,
    probe_rsp = sym PROBE_RSP,
    unexpected = sym unexpected_fault,
);

const STACK_SIZE: usize = 64 * 1024;

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

static mut STACK: Stack = Stack([0; STACK_SIZE]);
static mut IN_PROBE: u8 = 0;
static mut PROBE_RSP: u64 = 0;

/// A page-aligned page of the image.
#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// The pool `P0..P11`: zeroed `.bss` pages, mapped writable by Xen's initial mapping.
static mut POOL_PAGES: [Page; POOL] = [const { Page([0; 4096]) }; POOL];
/// The page the writability probe remaps.
static mut PROBE_PAGE: Page = Page([0; 4096]);

/// The result of [`xo_probe_read`]: the word and whether the read worked.
#[repr(C)]
struct ProbeResult {
    val: u64,
    ok: u64,
}

extern "C" {
    static hypercall_page: [u8; 4096];
    fn xo_probe_read(va: u64) -> ProbeResult;
    fn xo_page_fault();
}

/// Hypercall `nr` with up to five arguments (`rdi, rsi, rdx, r10, r8`), through the page Xen
/// filled.
///
/// # Safety
/// The arguments must be what hypercall `nr` expects (pointers to live, correctly laid out
/// memory).
unsafe fn hypercall(nr: usize, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    let ret: i64;
    let entry = addr_of!(hypercall_page) as u64 + (nr as u64) * 32;
    // SAFETY: the hypercall page holds Xen's stubs (`mov $nr, %eax; syscall; ret`); the
    // caller vouches for the arguments. Xen clobbers rcx and r11 (syscall) and may clobber
    // the argument registers.
    unsafe {
        asm!(
            "call {entry}",
            entry = in(reg) entry,
            inlateout("rdi") a1 => _,
            inlateout("rsi") a2 => _,
            inlateout("rdx") a3 => _,
            inlateout("r10") a4 => _,
            inlateout("r8") a5 => _,
            lateout("rax") ret,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

/// Writes `s` on Xen's console (`console_io(CONSOLEIO_write)`).
fn console(s: &[u8]) {
    // SAFETY: `s` is a live buffer of `s.len()` bytes.
    unsafe {
        hypercall(18, 0, s.len() as u64, s.as_ptr() as u64, 0, 0);
    }
}

/// Prints one line with the oracle's prefix.
fn say(line: &str) {
    let mut buf = [0u8; 300];
    let mut n = 0;
    for part in [b"XO|".as_slice(), line.as_bytes(), b"\n"] {
        let k = part.len().min(buf.len() - n);
        buf[n..n + k].copy_from_slice(&part[..k]);
        n += k;
    }
    console(&buf[..n]);
}

/// Exits QEMU through `isa-debug-exit` (port 0xf4): status `(code << 1) | 1`.
fn exit(code: u8) -> ! {
    let iopl: u32 = 1;
    // SAFETY: `PHYSDEVOP_set_iopl` reads one u32; afterwards the guest kernel may use port
    // I/O, and the write to 0xf4 makes QEMU exit.
    unsafe {
        hypercall(33, 6, addr_of!(iopl) as u64, 0, 0, 0);
        asm!("out dx, al", in("dx") 0xf4u16, in("al") code);
    }
    loop {
        core::hint::spin_loop();
    }
}

extern "C" fn unexpected_fault() -> ! {
    say("!! unexpected page fault");
    exit(0x11)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use core::fmt::Write;
    let mut line = xen_oracle::interp::Line::new();
    let _ = write!(line, "!! panic: {}", info.message());
    say(line.take());
    exit(0x11)
}

/// Reads a word of the guest's memory.
///
/// # Safety
/// `va` must be mapped and 8-byte aligned.
unsafe fn peek(va: u64) -> u64 {
    // SAFETY: the caller vouches for the address.
    unsafe { core::ptr::read_volatile(va as *const u64) }
}

/// The real hypervisor, as the interpreter sees it from inside the guest.
struct Xen {
    /// `start_info.mfn_list`: machine frame of each guest frame.
    mfn_list: u64,
    /// `start_info.nr_pages`.
    nr_pages: u64,
    /// Machine frames of `P0..P11`, `R`, `K`, `F`.
    pool: [u64; POOL],
    root: u64,
    kern: u64,
    foreign: u64,
    /// Virtual addresses of `R` and `K` in the initial mapping.
    root_va: u64,
    kern_va: u64,
    /// The probe page's own L1 entry.
    probe_pte: u64,
}

impl Xen {
    /// The machine frame of a virtual address of the initial mapping.
    fn mfn_of(&self, va: u64) -> u64 {
        let pfn = (va - VIRT_BASE) >> 12;
        // SAFETY: the frame list has `nr_pages` entries, mapped by Xen.
        unsafe { peek(self.mfn_list + pfn * 8) }
    }

    /// The initial mapping's address of an own machine frame (through the M2P table).
    fn va_of(&self, mfn: u64) -> Option<u64> {
        // SAFETY: the M2P table covers every machine frame of the host, read-only.
        let pfn = unsafe { peek(M2P + mfn * 8) };
        if pfn >= self.nr_pages || self.mfn_of(VIRT_BASE + (pfn << 12)) != mfn {
            return None;
        }
        Some(VIRT_BASE + (pfn << 12))
    }

    /// Whether the domain owns machine frame `mfn`.
    fn owns(&self, mfn: u64) -> bool {
        // SAFETY: as in `va_of`.
        let pfn = unsafe { peek(M2P + mfn * 8) };
        pfn < self.nr_pages && {
            // SAFETY: `pfn < nr_pages`.
            unsafe { peek(self.mfn_list + pfn * 8) == mfn }
        }
    }
}

impl Machine for Xen {
    fn mfn(&self, f: Frame) -> u64 {
        match f {
            Frame::P(n) => self.pool[n as usize],
            Frame::R => self.root,
            Frame::K => self.kern,
            Frame::F => self.foreign,
        }
    }

    fn kva(&self, n: u8) -> u64 {
        // SAFETY: only the address is taken.
        unsafe { addr_of!(POOL_PAGES[n as usize]) as u64 }
    }

    fn mmu_update(&mut self, ptr: u64, val: u64) -> i64 {
        self.mmu_update_batch(&[(ptr, val)])
    }

    fn mmu_update_batch(&mut self, reqs: &[(u64, u64)]) -> i64 {
        let mut done: u32 = 0;
        // SAFETY: `reqs` is an array of `mmu_update_t` (`ptr`, `val`: two u64).
        unsafe { hypercall(1, reqs.as_ptr() as u64, reqs.len() as u64, addr_of_mut!(done) as u64, DOMID_SELF, 0) }
    }

    fn mmuext(&mut self, cmd: u32, arg: u64) -> i64 {
        let op: [u64; 3] = [u64::from(cmd), arg, 0];
        let mut done: u32 = 0;
        // SAFETY: `op` is one `struct mmuext_op` (cmd, arg1, arg2).
        unsafe { hypercall(26, op.as_ptr() as u64, 1, addr_of_mut!(done) as u64, DOMID_SELF, 0) }
    }

    fn update_va_mapping(&mut self, va: u64, val: u64, flags: u64) -> i64 {
        // SAFETY: no pointers; the guard keeps the guest's own mappings.
        unsafe { hypercall(14, va, val, flags, 0, 0) }
    }

    fn read_entry(&mut self, f: Frame, index: u16) -> u64 {
        let page = match f {
            Frame::P(n) => self.kva(n),
            Frame::R => self.root_va,
            Frame::K => self.kern_va,
            Frame::F => return 0,
        };
        // SAFETY: pool pages and boot tables stay mapped (at least read-only).
        unsafe { peek(page + u64::from(index) * 8) }
    }

    fn load(&mut self, va: u64) -> Option<u64> {
        if va & 7 != 0 {
            return None;
        }
        // SAFETY: the probe catches a page fault through the trap table.
        let r = unsafe { xo_probe_read(va) };
        (r.ok != 0).then_some(r.val)
    }

    fn probe_va(&self) -> u64 {
        addr_of!(PROBE_PAGE) as u64
    }

    fn probe_pte(&self) -> u64 {
        self.probe_pte
    }
}

/// The guest's entry (from `_start`, on the guest's own stack).
extern "C" fn guest_main(start_info: u64) -> ! {
    use core::fmt::Write;
    let mut line = xen_oracle::interp::Line::new();

    // The page-fault handler (vector 14, kernel code segment FLAT_KERNEL_CS 0xe033).
    let traps: [u64; 4] = [14 | (0xe033 << 16), xo_page_fault as *const () as u64, 0, 0];
    // SAFETY: `traps` is a zero-terminated array of `struct trap_info`.
    let rc = unsafe { hypercall(0, traps.as_ptr() as u64, 0, 0, 0, 0) };
    if rc != 0 {
        let _ = write!(line, "!! set_trap_table rc={rc}");
        say(line.take());
        exit(0x11);
    }

    // SAFETY: Xen passes a mapped `start_info` (64-bit layout).
    let (nr_pages, pt_base, nr_pt_frames, mfn_list) =
        unsafe { (peek(start_info + 32), peek(start_info + 88), peek(start_info + 96), peek(start_info + 104)) };
    let mut xen = Xen {
        mfn_list,
        nr_pages,
        pool: [0; POOL],
        root: 0,
        kern: 0,
        foreign: 0,
        root_va: pt_base,
        kern_va: 0,
        probe_pte: 0,
    };
    for n in 0..POOL {
        xen.pool[n] = xen.mfn_of(xen.kva(n as u8));
    }
    xen.root = xen.mfn_of(pt_base);
    // SAFETY: the root is mapped read-only in the initial mapping.
    let kslot = unsafe { peek(pt_base + 511 * 8) };
    xen.kern = (kslot & xen_oracle::ADDR_MASK) >> 12;
    xen.kern_va = xen.va_of(xen.kern).unwrap_or(0);
    let mut f = 0x10000;
    while xen.owns(f) {
        f += 1;
    }
    xen.foreign = f;

    // The probe page's L1 entry: walk the root through the initial mapping.
    let pva = xen.probe_va();
    let mut table_va = pt_base;
    let mut ok = true;
    for shift in [39u32, 30, 21, 12] {
        // SAFETY: every boot table is mapped read-only in the initial mapping.
        let e = unsafe { peek(table_va + ((pva >> shift) & 511) * 8) };
        if shift == 12 {
            xen.probe_pte = e;
            break;
        }
        match xen.va_of((e & xen_oracle::ADDR_MASK) >> 12) {
            Some(v) if e & 1 != 0 => table_va = v,
            _ => {
                ok = false;
                break;
            }
        }
    }
    let _ = write!(
        line,
        "info pages={nr_pages} pt_base={pt_base:#x} pt_frames={nr_pt_frames} root={:#x} kern={:#x} foreign={:#x} probe_pte={:#x} pool={:#x} image_end={:#x}",
        xen.root,
        xen.kern,
        xen.foreign,
        xen.probe_pte,
        xen.kva(0),
        pva + 4096
    );
    say(line.take());
    for i in 0..512u16 {
        let e = xen.read_entry(Frame::R, i);
        if e & 1 != 0 && !(256..=271).contains(&i) {
            let _ = write!(line, "info root slot {i} = {e:#x}");
            say(line.take());
        }
    }
    if !ok || xen.kern_va == 0 {
        say("!! cannot walk the boot page tables");
        exit(0x11);
    }

    // SAFETY: the command line is a NUL-terminated string inside start_info.
    let cmd = unsafe { core::slice::from_raw_parts((start_info + 128) as *const u8, 1024) };
    let len = cmd.iter().position(|&b| b == 0).unwrap_or(cmd.len());
    let cmdline = core::str::from_utf8(&cmd[..len]).unwrap_or("");
    let _ = write!(line, "info cmdline {cmdline}");
    say(line.take());
    let jobs = cmdline.split_whitespace().filter(|t| !t.contains('/') && !t.ends_with(".elf"));
    let mut st = xen_oracle::interp::State::default();
    for job in jobs {
        xen_oracle::gen::run_jobs(&mut xen, &mut st, job, &mut |l| say(l));
    }
    say("done");
    exit(0x10)
}
