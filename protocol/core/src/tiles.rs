//! C2SP tlog-tiles resource paths and entry bundles (SPEC section 6.4): where a hash tile or an
//! entry bundle of the log of map heads lives, relative to the log's prefix.

use crate::log::TILE_WIDTH;

/// One tile resource: a hash tile at `level`, or the entry bundle (`level` `None`), with `width`
/// hashes or entries (256 for a full tile, written without `.p/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TilePath {
    pub level: Option<u8>,
    pub index: u64,
    pub width: u64,
}

/// Highest tile level a path may name (C2SP: 0 to 63).
pub const MAX_TILE_LEVEL: u8 = 63;

impl TilePath {
    /// `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`, N in 3-digit groups, all but the
    /// last prefixed with `x` (1234067 is `x001/x234/067`).
    pub fn path(&self) -> String {
        let level = self.level.map_or_else(|| "entries".to_owned(), |l| l.to_string());
        let mut groups = Vec::new();
        let mut n = self.index;
        loop {
            groups.push(n % 1000);
            n /= 1000;
            if n == 0 {
                break;
            }
        }
        let last = groups.len() - 1;
        let index: Vec<String> = groups
            .iter()
            .rev()
            .enumerate()
            .map(|(i, g)| if i == last { format!("{g:03}") } else { format!("x{g:03}") })
            .collect();
        let partial = if self.width == TILE_WIDTH { String::new() } else { format!(".p/{}", self.width) };
        format!("tile/{level}/{}{partial}", index.join("/"))
    }

    /// Parses a path (after the prefix) strictly: only what [`TilePath::path`] writes.
    pub fn parse(path: &str) -> Option<TilePath> {
        let rest = path.strip_prefix("tile/")?;
        let (level, rest) = rest.split_once('/')?;
        let level = match level {
            "entries" => None,
            l => Some(u8::try_from(canonical(l)?).ok().filter(|l| *l <= MAX_TILE_LEVEL)?),
        };
        let (index, width) = match rest.split_once(".p/") {
            Some((index, w)) => (index, canonical(w).filter(|w| (1..TILE_WIDTH).contains(w))?),
            None => (rest, TILE_WIDTH),
        };
        let mut n: u64 = 0;
        let groups: Vec<&str> = index.split('/').collect();
        for (i, group) in groups.iter().enumerate() {
            let digits = if i + 1 < groups.len() { group.strip_prefix('x')? } else { group };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            n = n.checked_mul(1000)?.checked_add(digits.parse::<u64>().ok()?)?;
        }
        let tile = TilePath { level, index: n, width };
        (tile.path() == path).then_some(tile)
    }

    /// The tiles of `level` (or the entry bundles) a log of `size` leaves has: the full ones and
    /// the partial one at its end, if any.
    pub fn count_at(level: Option<u8>, size: u64) -> (u64, u64) {
        let span = TILE_WIDTH.saturating_pow(u32::from(level.unwrap_or(0)));
        let entries = size / span;
        (entries / TILE_WIDTH, entries % TILE_WIDTH)
    }
}

/// Canonical decimal (no sign, no leading zeros), or `None`.
fn canonical(s: &str) -> Option<u64> {
    let n: u64 = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}

/// An entry bundle: each entry as a big-endian u16 length and its bytes (C2SP tlog-tiles).
/// `None` if an entry is longer than 65535 bytes (a map head never is).
pub fn entry_bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for entry in entries {
        out.extend_from_slice(&u16::try_from(entry.len()).ok()?.to_be_bytes());
        out.extend_from_slice(entry);
    }
    Some(out)
}

/// Splits an entry bundle into its entries, or `None` if it is not one.
pub fn parse_entry_bundle(mut bundle: &[u8]) -> Option<Vec<&[u8]>> {
    let mut entries = Vec::new();
    while let [a, b, rest @ ..] = bundle {
        let len = usize::from(u16::from_be_bytes([*a, *b]));
        let (entry, after) = (rest.get(..len)?, rest.get(len..)?);
        entries.push(entry);
        bundle = after;
    }
    bundle.is_empty().then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_c2sp() {
        let t = |level, index, width| TilePath { level, index, width };
        assert_eq!(t(Some(0), 1_234_067, 256).path(), "tile/0/x001/x234/067");
        assert_eq!(t(Some(1), 5, 17).path(), "tile/1/005.p/17");
        assert_eq!(t(None, 1000, 256).path(), "tile/entries/x001/000");
        for tile in [t(Some(0), 1_234_067, 256), t(Some(63), 0, 1), t(None, 999, 255), t(None, u64::MAX, 256)] {
            assert_eq!(TilePath::parse(&tile.path()), Some(tile));
        }
        for bad in [
            "tile/0/5",
            "tile/0/x005",
            "tile/0/0005",
            "tile/64/000",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/07",
            "tile/00/000",
            "tile/entries/x000/001",
            "tiles/0/000",
            "tile/0/x1000/000",
        ] {
            assert_eq!(TilePath::parse(bad), None, "{bad}");
        }
        assert_eq!(TilePath::count_at(Some(0), 70_000), (273, 112));
        assert_eq!(TilePath::count_at(Some(1), 70_000), (1, 17));
        assert_eq!(TilePath::count_at(Some(2), 70_000), (0, 1));
    }

    #[test]
    fn bundles_round_trip() {
        let entries: Vec<&[u8]> = vec![b"a", b"", b"head"];
        let bundle = entry_bundle(entries.iter().copied()).unwrap();
        assert_eq!(bundle, b"\0\x01a\0\0\0\x04head");
        assert_eq!(parse_entry_bundle(&bundle).unwrap(), entries);
        assert!(parse_entry_bundle(&bundle[..bundle.len() - 1]).is_none());
        assert!(entry_bundle([&[0u8; 65536][..]]).is_none());
    }
}
