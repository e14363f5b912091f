//! zstd decompression with one reusable context per thread.
//!
//! `zstd::bulk::decompress` creates and frees a decompression context on every call, which
//! costs more than decompressing one of the small pages queries read (block chunk pages,
//! trace segments). Each reading thread keeps its context instead.

use std::cell::RefCell;

thread_local! {
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Decompresses one zstd frame of at most `capacity` bytes.
pub(crate) fn decompress(compressed: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if let Some(d) = slot.as_mut() {
            return d.decompress(compressed, capacity);
        }
        let mut d = zstd::bulk::Decompressor::new()?;
        let out = d.decompress(compressed, capacity);
        *slot = Some(d);
        out
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn frames_decompress_one_after_another_and_bad_ones_fail() {
        for text in [&b"first page"[..], &[7u8; 5000][..], b""] {
            let frame = zstd::bulk::compress(text, 3).unwrap();
            assert_eq!(super::decompress(&frame, text.len()).unwrap(), text);
        }
        assert!(super::decompress(b"not zstd", 100).is_err());
        // the context is still good after an error
        let frame = zstd::bulk::compress(b"again", 3).unwrap();
        assert_eq!(super::decompress(&frame, 5).unwrap(), b"again");
    }
}
