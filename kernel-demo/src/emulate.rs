//! Handing a write fault on a read-only page to a hypervisor that emulates the store (Xen's
//! `ptwr_do_page_fault`): the #PF handler decodes the faulting store, gives its address (CR2)
//! and value to the handler installed with [`set_write_fault_handler`], and, if that took care
//! of the store, resumes after the instruction.
//!
//! Only the stores the kernel makes into memory are decoded: `mov r/m32, r32` (`89 /r`) and
//! `mov r/m32, imm32` (`C7 /0 id`), without prefixes. Anything else stays a fault.

use spin::Once;

use crate::idt::TrapFrame;

/// Given the faulting linear address and the 32-bit value stored, returns whether the store
/// was emulated.
pub type WriteFaultHandler = fn(u32, u32) -> bool;

static HANDLER: Once<WriteFaultHandler> = Once::new();

/// Installs the hypervisor's write-fault handler (once per boot).
pub fn set_write_fault_handler(h: WriteFaultHandler) {
    HANDLER.call_once(|| h);
}

/// A decoded 32-bit store: the instruction's length and the value it stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Store {
    /// Bytes of the instruction.
    pub len: u32,
    /// The value stored.
    pub value: u32,
}

/// The general register `r` (ModRM numbering) at the time of the trap.
fn register(frame: &TrapFrame, r: u8) -> u32 {
    match r {
        0 => frame.eax,
        1 => frame.ecx,
        2 => frame.edx,
        3 => frame.ebx,
        // The CPU pushed EIP/CS/EFLAGS without a stack switch, the stub the vector and the
        // error code: ESP at the fault is 20 bytes above what `pushad` saved.
        4 => frame.esp_at_pushad + 20,
        5 => frame.ebp,
        6 => frame.esi,
        _ => frame.edi,
    }
}

/// Decodes the store whose code bytes are `code` (at the faulting EIP).
pub fn decode(code: &[u8; 12], frame: &TrapFrame) -> Option<Store> {
    let (op, modrm) = (code[0], code[1]);
    let (md, reg, rm) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
    if md == 3 {
        return None; // a register destination: not a store
    }
    let mut len = 2u32;
    if rm == 4 {
        let sib = code[2];
        len += 1;
        if md == 0 && sib & 7 == 5 {
            len += 4;
        }
    } else if md == 0 && rm == 5 {
        len += 4;
    }
    len += match md {
        1 => 1,
        2 => 4,
        _ => 0,
    };
    match op {
        0x89 => Some(Store { len, value: register(frame, reg) }),
        0xC7 if reg == 0 => {
            let at = len as usize;
            let value = u32::from_le_bytes([code[at], code[at + 1], code[at + 2], code[at + 3]]);
            Some(Store { len: len + 4, value })
        }
        _ => None,
    }
}

/// The #PF path: a write to a present, read-only page (error code P and W) is offered to the
/// installed handler; if it emulated the store, EIP moves past the instruction and `true` is
/// returned.
pub fn try_emulate(frame: &mut TrapFrame, cr2: u32) -> bool {
    const PRESENT_WRITE: u32 = 0b11;
    let Some(handler) = HANDLER.get() else { return false };
    if frame.error_code & PRESENT_WRITE != PRESENT_WRITE {
        return false;
    }
    let mut code = [0u8; 12];
    let eip = frame.eip as *const u8;
    for (i, b) in code.iter_mut().enumerate() {
        // SAFETY: EIP is kernel code that just executed (mapped, readable); the longest store
        // decoded is 11 bytes, inside the text of the function that contains it.
        *b = unsafe { eip.add(i).read_volatile() };
    }
    let Some(store) = decode(&code, frame) else { return false };
    if !handler(cr2, store.value) {
        return false;
    }
    frame.eip += store.len;
    true
}
