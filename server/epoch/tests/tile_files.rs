//! The log of heads written as C2SP tile files: after every epoch the files a static web server
//! would serve hold exactly the log's tiles, bundles and checkpoint; partial tiles go once their
//! tile is full; a lost file is written again.

use keyfold_core::log::{self, TILE_WIDTH};
use keyfold_core::tiles::{TilePath, parse_entry_bundle};
use keyfold_core::{Hash, HashSuite, Head, LogTree, SigningKey, verify_checkpoint_note};
use keyfold_epoch::{EpochJob, MemoryArchives, MemoryHeadStore, TileFiles};
use keyfold_ingest::MemoryQueue;
use keyfold_map::{Map, MemoryStore, TreeConfig};
use std::path::Path;
use std::sync::Arc;

const ORIGIN: &str = "example.com/keyfold";

fn read(dir: &Path, tile: TilePath) -> Vec<u8> {
    std::fs::read(dir.join(tile.path())).unwrap_or_else(|e| panic!("{}: {e}", tile.path()))
}

#[test]
fn every_epoch_leaves_the_tiles_a_static_server_needs() {
    let dir = tempfile::tempdir().unwrap();
    let config = TreeConfig::new(HashSuite::Blake3, 2).unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let job = EpochJob::open(
        MemoryQueue::new(config.suite, 100),
        Map::new(MemoryStore::new(config)),
        MemoryHeadStore::default(),
        Arc::new(MemoryArchives::default()),
        key.clone(),
        ORIGIN,
        1_000,
    )
    .unwrap()
    .with_tile_files(TileFiles::new(dir.path()))
    .unwrap();
    assert_eq!(read(dir.path(), TilePath { level: Some(0), index: 0, width: 1 }).len(), 32, "genesis");
    for epoch in 1..=300u64 {
        job.run_epoch(1_000 + epoch).unwrap();
    }
    // 301 heads: one full level-0 tile and a partial one of 45, a partial level-1 tile of 1.
    let checkpoint = std::fs::read_to_string(dir.path().join("checkpoint")).unwrap();
    let signed = verify_checkpoint_note(&checkpoint, ORIGIN, &key.verifying_key().to_bytes()).unwrap();
    assert_eq!(signed.checkpoint.size, 301);
    let full = read(dir.path(), TilePath { level: Some(0), index: 0, width: TILE_WIDTH });
    let partial = read(dir.path(), TilePath { level: Some(0), index: 1, width: 45 });
    let level1 = read(dir.path(), TilePath { level: Some(1), index: 0, width: 1 });
    let leaves: Vec<Hash> = full.chunks(32).chain(partial.chunks(32)).map(|c| Hash(c.try_into().unwrap())).collect();
    assert_eq!(log::root(&leaves), signed.checkpoint.root, "the files rebuild the signed root");
    assert_eq!(level1, log::root(&leaves[..256]).0, "level 1 holds the full tile's root");
    assert!(!dir.path().join("tile/0/000.p").exists(), "partials of a full tile are removed");
    assert!(dir.path().join("tile/0/001.p/44").exists(), "partials of published sizes stay");
    let bundle = read(dir.path(), TilePath { level: None, index: 1, width: 45 });
    let entries = parse_entry_bundle(&bundle).unwrap();
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(log::leaf_hash(entry), leaves[256 + i]);
        assert_eq!(Head::parse_body(std::str::from_utf8(entry).unwrap()).unwrap().epoch.0, 256 + i as u64);
    }
    assert_eq!(
        parse_entry_bundle(&read(dir.path(), TilePath { level: None, index: 0, width: 256 })).unwrap().len(),
        256
    );

    // A lost or torn file is written again from the log.
    let mut tree = LogTree::new();
    leaves.iter().for_each(|l| tree.push(*l));
    std::fs::remove_file(dir.path().join("tile/0/000")).unwrap();
    std::fs::write(dir.path().join("tile/1/000.p/1"), [0u8; 7]).unwrap();
    TileFiles::new(dir.path()).publish_all(&tree, &|_| unreachable!("bundles are all there"), &checkpoint).unwrap();
    assert_eq!(read(dir.path(), TilePath { level: Some(0), index: 0, width: TILE_WIDTH }), full);
    assert_eq!(read(dir.path(), TilePath { level: Some(1), index: 0, width: 1 }), level1);
}
