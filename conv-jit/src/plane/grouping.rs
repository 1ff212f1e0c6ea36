//! How a kernel that streams several columns of vectors down a plane together
//! ([`super::columns`]) groups a row's columns, and the taps a group takes. ([`super::strided`]
//! groups its columns the same way with a copy of its own: moved onto these functions, the same
//! groups and taps, its loops compiled differently and ran 0.94–0.96× as fast on dw3_s2_c96_112.)

use super::{Lanes, masked_window, window};

/// A 3 × 3 window's taps, each in every lane.
pub(super) type Window<V> = [[V; 3]; 3];

/// A group's taps: the window's at `weight`, and its border column's — where a masked multiply-add
/// costs a blend ([`Lanes::MASK_WEIGHTS`]) masked by the column's tap-column `border` masks
/// instead, −0 outside (its loads there are +0: the sums keep their bits, as
/// [`Lanes::masked_weight`] says).
///
/// # Safety
/// The host runs `X`'s instructions; `weight` points to 9 readable elements.
#[inline(always)]
pub(super) unsafe fn taps<X: Lanes>(weight: *const f32, border: Option<&[X::M; 3]>) -> (Window<X::V>, Window<X::V>) {
    // SAFETY: the caller's contract.
    unsafe {
        let taps = window::<X, 3>(weight);
        match border {
            Some(masks) if X::MASK_WEIGHTS => (taps, masked_window::<X, 3>(taps, masks)),
            _ => (taps, taps),
        }
    }
}

/// Columns streamed down a plane together: some inside the row and at most one on its border.
pub(super) struct Group<T> {
    pub(super) inside: Vec<T>,
    pub(super) border: Option<T>,
}

/// The groups that cover a row: the `inside` columns (in order) in groups as even as `most`
/// allows (5 columns 3 and 2, not 4 and 1), and each of the `borders` (with whether it lies left
/// of the inside ones) with the nearest group that has none where `with_inside` — an input row's
/// vectors are then read in order (one column at a time, the first column down a plane took ~1.6×
/// as long as the others, whose lines the hardware had fetched by then) — else, or where none is
/// free, alone.
pub(super) fn groups<T: Copy>(inside: &[T], borders: &[(T, bool)], most: usize, with_inside: bool) -> Vec<Group<T>> {
    // `count` groups, the first `inside.len() % count` of them one column larger than the others.
    let count = inside.len().div_ceil(most.max(1));
    let mut groups: Vec<Group<T>> = Vec::with_capacity(count + borders.len());
    let mut rest = inside;
    for g in 0..count {
        let (columns, after) = rest.split_at(inside.len() / count + usize::from(g < inside.len() % count));
        groups.push(Group { inside: columns.to_vec(), border: None });
        rest = after;
    }
    for &(border, left_of_inside) in borders {
        let free = if !with_inside {
            None
        } else if left_of_inside {
            groups.iter_mut().find(|group| group.border.is_none())
        } else {
            groups.iter_mut().rev().find(|group| group.border.is_none())
        };
        match free {
            Some(group) => group.border = Some(border),
            None => groups.push(Group { inside: Vec::new(), border: Some(border) }),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every column is in exactly one group, the inside ones in order and groups of at most
    /// `most`, as even as can be; border columns join the nearest group on their side, or go alone.
    #[test]
    fn groups_hold_every_column_once() {
        for inside in 0..12 {
            for most in 1..5 {
                for with_inside in [false, true] {
                    let columns: Vec<usize> = (1..=inside).collect();
                    let borders = [(0, true), (inside + 1, false)];
                    let made = groups(&columns, &borders, most, with_inside);
                    let sizes: Vec<usize> = made.iter().map(|group| group.inside.len()).filter(|&n| n > 0).collect();
                    assert!(sizes.iter().all(|&n| n <= most), "{inside} by {most}: {sizes:?}");
                    assert!(sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0) <= 1, "{sizes:?}");
                    let order: Vec<usize> = made.iter().flat_map(|group| group.inside.clone()).collect();
                    assert_eq!(order, columns);
                    let mut all: Vec<usize> = order.into_iter().chain(made.iter().filter_map(|g| g.border)).collect();
                    all.sort();
                    assert_eq!(all, (0..=inside + 1).collect::<Vec<_>>(), "{inside} by {most}");
                    let (first, last) = (made.first().unwrap(), made.iter().rev().find(|g| !g.inside.is_empty()));
                    if with_inside && inside > 0 {
                        assert_eq!(first.border, Some(0), "the left border column with the first group");
                        let right = if made.iter().filter(|g| !g.inside.is_empty()).count() > 1 { last } else { None };
                        if let Some(right) = right {
                            assert_eq!(right.border, Some(inside + 1), "the right one with the last");
                        }
                    } else {
                        assert!(made.iter().all(|g| g.border.is_none() || g.inside.is_empty()), "alone");
                    }
                }
            }
        }
    }
}
