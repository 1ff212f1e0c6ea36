//! [`AlignedBuffer`]: the f32 buffers a plan's code reads and writes — its run's values and
//! (built by the caller) its packed parameters — at a cache line, and the large ones on huge pages.

use std::fmt;
use std::ops::{Deref, DerefMut};

use aligned_vec::{AVec, ConstAlign};
use memmap2::{MmapMut, MmapOptions};

/// Bytes per cache line, where every buffer starts.
pub(crate) const LINE: usize = 64;

/// Bytes of a huge page of x86-64 (and of AArch64 with 4 KiB pages): a buffer of at least half as
/// many bytes ([`HUGE_MIN`]) lives in whole huge pages of its own.
const HUGE_PAGE: usize = 2 << 20;

/// The fewest bytes of a buffer that takes huge pages: half a page, so that the rounding up to
/// whole pages at most doubles a buffer's memory.
const HUGE_MIN: usize = HUGE_PAGE / 2;

/// A buffer of f32s that starts at a cache line (64 bytes); from 1 MiB on, it lives in whole
/// 2 MiB pages of an anonymous mapping of its own, advised as transparent huge pages on Linux.
///
/// Why a cache line: the parts of a stage split by output channels write interleaved runs of whole
/// vectors of a value, whose boundaries are then line boundaries too. With `Vec`'s allocations
/// (16 bytes into a page for large ones) two cores wrote the same line at every boundary:
/// measured on 2 threads, MobileNetV1 ran 1.03x faster with aligned buffers (its 7×7 and 14×14
/// pointwise layers were split by channels then; old and new builds alternating).
///
/// Why huge pages: a kernel streams its weights and values through many 4 KiB pages, and in a
/// virtual machine each TLB miss walks two page tables. Measured on an Intel Xeon under KVM
/// (`convgen bench --steps`, builds alternating, 3–4 rounds): MobileNetV1 9.3–9.8 ms → 8.6–8.9
/// with its packed weights and values on huge pages; its 7×7 pointwise layers, which read 2 and
/// 4 MiB of weights, 0.50–0.55 → 0.40–0.45 and 1.02–1.10 → 0.83–0.92 ms. Where the mapping fails
/// or the system has no huge pages the buffer is still whole and aligned, only slower.
///
/// A run's value may instead start where the caller's output does within a line
/// ([`AlignedBuffer::zeroed_movable`], [`AlignedBuffer::start_within_line`]): see
/// [`conv_dsl::follow`].
pub struct AlignedBuffer {
    storage: Storage,
    /// The buffer's first element in its storage: 0, or for a movable one, below [`LINE_F32S`].
    start: usize,
    len: usize,
}

/// f32s per cache line: the line `conv_dsl::follow` assumes.
pub(crate) const LINE_F32S: usize = LINE / size_of::<f32>();
const _: () = assert!(LINE_F32S as u64 == conv_dsl::follow::LINE_F32S);

enum Storage {
    /// A small buffer, on the heap.
    Heap(AVec<f32, ConstAlign<LINE>>),
    /// A large one: `len` f32s from byte `offset` of `map`, the mapping's first address that is a
    /// multiple of [`HUGE_PAGE`].
    Pages { map: MmapMut, offset: usize, len: usize },
}

impl Storage {
    /// `len` zeros.
    fn zeroed(len: usize) -> Storage {
        huge_pages(len).unwrap_or_else(|| Storage::Heap(AVec::from_iter(LINE, std::iter::repeat_n(0.0, len))))
    }

    fn as_slice(&self) -> &[f32] {
        match self {
            Storage::Heap(vec) => vec,
            // A page-aligned range of whole f32s: the cast cannot fail.
            Storage::Pages { map, offset, len } => bytemuck::cast_slice(&map[page_bytes(*offset, *len)]),
        }
    }

    fn as_mut_slice(&mut self) -> &mut [f32] {
        match self {
            Storage::Heap(vec) => vec,
            Storage::Pages { map, offset, len } => bytemuck::cast_slice_mut(&mut map[page_bytes(*offset, *len)]),
        }
    }
}

/// The bytes of a [`Storage::Pages`] buffer of `len` f32s from byte `offset` of its mapping.
fn page_bytes(offset: usize, len: usize) -> std::ops::Range<usize> {
    offset..offset + len * size_of::<f32>()
}

impl AlignedBuffer {
    /// A buffer of `len` zeros. A large one costs no writes: its pages are zero when first touched.
    pub fn zeroed(len: usize) -> AlignedBuffer {
        AlignedBuffer { storage: Storage::zeroed(len), start: 0, len }
    }

    /// A buffer of `len` zeros whose start can move within its first cache line
    /// ([`AlignedBuffer::start_within_line`]); it starts at the line.
    pub fn zeroed_movable(len: usize) -> AlignedBuffer {
        AlignedBuffer { storage: Storage::zeroed(len + LINE_F32S - 1), start: 0, len }
    }

    /// Moves the start of a buffer made by [`AlignedBuffer::zeroed_movable`] to element `start`
    /// (below [`LINE_F32S`]) of its first line. A buffer that moves is zeroed, as a new one
    /// would be (its elements would otherwise be other elements' old values). Returns whether
    /// the buffer could move there (never, for another buffer).
    pub fn start_within_line(&mut self, start: usize) -> bool {
        if start >= LINE_F32S || self.storage.as_slice().len() < self.len + LINE_F32S - 1 {
            return false;
        }
        if start != self.start {
            self.storage.as_mut_slice().fill(0.0);
            self.start = start;
        }
        true
    }

    /// Moves the start of a buffer made by [`AlignedBuffer::zeroed_movable`] to where `other`
    /// starts within its cache line ([`AlignedBuffer::start_within_line`]).
    pub fn follow(&mut self, other: &[f32]) -> bool {
        self.start_within_line(other.as_ptr() as usize % LINE / size_of::<f32>())
    }

    /// A buffer holding a copy of `data`.
    pub fn copied(data: &[f32]) -> AlignedBuffer {
        let len = data.len();
        if let Some(pages) = huge_pages(len) {
            let mut buffer = AlignedBuffer { storage: pages, start: 0, len };
            buffer.copy_from_slice(data);
            return buffer;
        }
        AlignedBuffer { storage: Storage::Heap(AVec::from_slice(LINE, data)), start: 0, len }
    }

    /// An empty buffer (no allocation).
    pub fn empty() -> AlignedBuffer {
        AlignedBuffer { storage: Storage::Heap(AVec::new(LINE)), start: 0, len: 0 }
    }

    /// Moves the buffer out, leaving an empty one.
    pub(crate) fn take(&mut self) -> AlignedBuffer {
        std::mem::replace(self, AlignedBuffer::empty())
    }

    /// Whether the buffer lives in a mapping of whole huge pages of its own.
    pub fn on_huge_pages(&self) -> bool {
        matches!(self.storage, Storage::Pages { .. })
    }
}

/// The storage of a buffer of `len` f32s in huge pages, if it is large enough to take them
/// ([`HUGE_MIN`]) and the mapping succeeds: `len` rounded up to whole pages, in a mapping one page
/// longer, from its first page boundary (the kernel backs only aligned 2 MiB ranges with huge pages).
fn huge_pages(len: usize) -> Option<Storage> {
    let bytes = len.checked_mul(size_of::<f32>())?;
    if bytes < HUGE_MIN {
        return None;
    }
    let rounded = bytes.checked_next_multiple_of(HUGE_PAGE)?;
    let map = MmapOptions::new().len(rounded.checked_add(HUGE_PAGE)?).map_anon().ok()?;
    let offset = (map.as_ptr() as usize).next_multiple_of(HUGE_PAGE) - map.as_ptr() as usize;
    // Only a hint: without transparent huge pages the buffer works the same.
    #[cfg(target_os = "linux")]
    let _ = map.advise_range(memmap2::Advice::HugePage, offset, rounded);
    Some(Storage::Pages { map, offset, len })
}

impl Deref for AlignedBuffer {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        &self.storage.as_slice()[self.start..self.start + self.len]
    }
}

impl DerefMut for AlignedBuffer {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.storage.as_mut_slice()[self.start..self.start + self.len]
    }
}

impl AsRef<[f32]> for AlignedBuffer {
    fn as_ref(&self) -> &[f32] {
        self
    }
}

impl Clone for AlignedBuffer {
    fn clone(&self) -> AlignedBuffer {
        AlignedBuffer::copied(self)
    }
}

impl fmt::Debug for AlignedBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlignedBuffer").field("len", &self.len()).field("huge_pages", &self.on_huge_pages()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{AlignedBuffer, HUGE_MIN, HUGE_PAGE, LINE, LINE_F32S};

    /// Lengths below, at and above the huge-page threshold, and a mapping of several pages.
    const LENGTHS: [usize; 6] = [0, 3, 1000, HUGE_MIN / 4 - 1, HUGE_MIN / 4, HUGE_PAGE / 4 * 3 + 5];

    #[test]
    fn buffers_start_at_a_cache_line_and_large_ones_at_a_huge_page() {
        for len in LENGTHS {
            let data: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 7.0).collect();
            let mut zeros = AlignedBuffer::zeroed(len);
            let copy = AlignedBuffer::copied(&data);
            for buffer in [&zeros, &copy] {
                let align = if len * 4 >= HUGE_MIN { HUGE_PAGE } else { LINE };
                assert_eq!((buffer.len(), buffer.as_ptr() as usize % align), (len, 0), "{len} elements");
                assert_eq!(buffer.on_huge_pages(), len * 4 >= HUGE_MIN, "{len} elements");
            }
            assert!(zeros.iter().all(|&x| x == 0.0) && copy[..] == data[..], "{len} elements");
            // Written through, moved out and cloned, the data stays.
            zeros.copy_from_slice(&data);
            let moved = zeros.take();
            assert_eq!((&moved[..], zeros.len()), (&data[..], 0), "{len} elements");
            assert_eq!(&moved.clone()[..], &data[..], "{len} elements");
        }
    }

    #[test]
    fn a_movable_buffer_starts_anywhere_in_its_first_line_and_is_zeroed_when_it_moves() {
        for len in LENGTHS {
            let mut buffer = AlignedBuffer::zeroed_movable(len);
            let base = buffer.as_ptr() as usize;
            assert_eq!(base % LINE, 0, "{len} elements");
            // (start, whether the data stays: the same start again)
            for (start, stays) in [(3, false), (3, true), (0, false), (LINE_F32S - 1, false)] {
                buffer.fill(7.0);
                assert!(buffer.start_within_line(start), "{len} elements from {start}");
                assert_eq!((buffer.len(), buffer.as_ptr() as usize), (len, base + start * 4), "{len} from {start}");
                let expected = if stays { 7.0 } else { 0.0 };
                assert!(buffer.iter().all(|&x| x == expected), "{len} elements from {start}");
            }
            assert!(!buffer.start_within_line(LINE_F32S), "{len} elements: past the line");
            // Following a slice: the same place within a line.
            let other = [0.0f32; 40];
            for at in [0, 1, 7, 16, 23] {
                assert!(buffer.follow(&other[at..]), "{len} elements");
                assert_eq!(buffer.as_ptr() as usize % LINE, other[at..].as_ptr() as usize % LINE, "{len}, {at}");
            }
            // A buffer that is not movable stays at its line.
            let mut fixed = AlignedBuffer::zeroed(len);
            assert!(!fixed.start_within_line(1) && (fixed.as_ptr() as usize).is_multiple_of(LINE), "{len} elements");
        }
    }
}
