//! The C memory functions the prebuilt `core`/`compiler_builtins` call
//! (`memcpy`, `memmove`, `memset`, `memcmp`, `bcmp`).
//!
//! They are written with `rep movsb`/`rep stosb`/`repe cmpsb`: a plain Rust
//! loop here can be recognised by LLVM and compiled back into a call to the
//! very function being defined (infinite recursion). `esi` cannot be an
//! inline-asm operand on i686, so the source pointer is swapped into `esi`
//! around the string instruction and swapped back afterwards.

use core::arch::asm;

/// Copies `n` bytes upwards (lowest address first).
///
/// # Safety
/// `src..src+n` must be readable, `dest..dest+n` writable, and if the ranges
/// overlap then `dest <= src`.
unsafe fn copy_forward(dest: *mut u8, src: *const u8, n: usize) {
    // SAFETY: the caller guarantees both ranges are valid; DF is clear per the
    // ABI; esi is restored by the second xchg.
    unsafe {
        asm!(
            "xchg esi, {src}",
            "rep movsb",
            "xchg esi, {src}",
            src = inout(reg) src => _,
            inout("edi") dest => _,
            inout("ecx") n => _,
            options(nostack, preserves_flags)
        );
    }
}

/// Copies `n` (> 0) bytes downwards (highest address first).
///
/// # Safety
/// `src..src+n` must be readable and `dest..dest+n` writable.
unsafe fn copy_backward(dest: *mut u8, src: *const u8, n: usize) {
    // SAFETY: the caller guarantees both ranges are valid; DF is set only for the
    // `rep movsb` and cleared again before returning, as the ABI requires.
    unsafe {
        asm!(
            "std",
            "xchg esi, {src}",
            "rep movsb",
            "xchg esi, {src}",
            "cld",
            src = inout(reg) src.add(n - 1) => _,
            inout("edi") dest.add(n - 1) => _,
            inout("ecx") n => _,
            options(nostack)
        );
    }
}

/// C `memcpy`.
///
/// # Safety
/// `src..src+n` must be readable, `dest..dest+n` writable, and the ranges must
/// not overlap.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: forwarded from the caller's contract.
    unsafe { copy_forward(dest, src, n) };
    dest
}

/// C `memmove`: like [`memcpy`] but the ranges may overlap.
///
/// # Safety
/// `src..src+n` must be readable and `dest..dest+n` writable.
#[no_mangle]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if n == 0 {
        return dest;
    }
    // Forward is safe unless dest lies inside (src, src + n).
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // SAFETY: forwarded from the caller's contract; no harmful overlap.
        unsafe { copy_forward(dest, src, n) };
    } else {
        // SAFETY: forwarded from the caller's contract; n > 0.
        unsafe { copy_backward(dest, src, n) };
    }
    dest
}

/// C `memset`: fills `n` bytes at `dest` with the low byte of `c`.
///
/// # Safety
/// `dest..dest+n` must be writable.
#[no_mangle]
pub unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the range is writable; DF is clear.
    unsafe {
        asm!(
            "rep stosb",
            inout("edi") dest => _,
            inout("ecx") n => _,
            in("al") c as u8,
            options(nostack, preserves_flags)
        );
    }
    dest
}

/// C `memcmp`: compares `n` bytes, returning <0, 0 or >0 like the first
/// differing byte pair (as unsigned bytes).
///
/// # Safety
/// `a..a+n` and `b..b+n` must be readable.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    if n == 0 {
        return 0;
    }
    let a_after: *const u8;
    // SAFETY: the caller guarantees both ranges are readable; DF is clear; esi
    // is restored by the second xchg. `repe cmpsb` stops one byte past the first
    // difference, or after the last byte.
    unsafe {
        asm!(
            "xchg esi, {a}",
            "repe cmpsb",
            "xchg esi, {a}",
            a = inout(reg) a => a_after,
            inout("edi") b => _,
            inout("ecx") n => _,
            options(readonly, nostack)
        );
    }
    let last = a_after as usize - a as usize - 1;
    // SAFETY: `last < n`, inside both readable ranges.
    let (x, y) = unsafe { (*a.add(last), *b.add(last)) };
    i32::from(x) - i32::from(y)
}

/// C `bcmp`: zero iff the `n` bytes are equal.
///
/// # Safety
/// As for [`memcmp`].
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: forwarded from the caller's contract.
    unsafe { memcmp(a, b, n) }
}
