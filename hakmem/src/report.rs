//! Text output without allocating: a fixed buffer that implements `fmt::Write`.
//!
//! Used for warnings, the foreign-pointer report and `HAKMEM_STATS` output,
//! all of which can run inside malloc/free where allocating would re-enter.

use core::fmt;

/// A `fmt::Write` sink of `N` bytes on the stack; output past `N` is dropped.
pub struct StackWriter<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackWriter<N> {
    pub const fn new() -> Self {
        StackWriter {
            buf: [0; N],
            len: 0,
        }
    }

    /// What was written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Writes the buffer to stderr and empties it.
    pub fn flush_stderr(&mut self) {
        crate::os::write_stderr(self.as_bytes());
        self.len = 0;
    }
}

impl<const N: usize> Default for StackWriter<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for StackWriter<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn formats_and_truncates() {
        let mut w = StackWriter::<8>::new();
        write!(w, "{}-{:x}", 12, 255).unwrap();
        assert_eq!(w.as_bytes(), b"12-ff");
        write!(w, "abcdef").unwrap();
        assert_eq!(w.as_bytes(), b"12-ffabc");
    }
}
