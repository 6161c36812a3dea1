//! The prefunded dev accounts, in one list. scripts/genesis/*.json fund
//! Hardhat's ten default accounts; `DEV_KEYS[n]` is the private key of
//! account #n (#0 is 0xf39F..2266, also sendtx.mjs's default key).
//!
//! Two senders that share a key share its nonces and refuse each other's
//! transactions, so each helper takes its keys from its own slots below;
//! a helper may reuse another's slot only where the two never run at once.

pub const DEV_KEYS: [&str; 10] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/// `send_transactions(.., key_index)`: accounts #0-#4 (index modulo 5).
pub const SEND_KEYS: [usize; 5] = [0, 1, 2, 3, 4];

/// `send_transactions_at(.., key_index)` and the benchmarks' steady load:
/// accounts #5 and #6 (index modulo 2).
pub const PACED_KEYS: [usize; 2] = [5, 6];

/// The fault suite's load, one sender per leader-mode node: #7, #8, #9,
/// then #4 and #3, which `send_transactions` also uses (its indexes 4 and
/// 3). The suite's load runs 3 senders (4 in the full randomized mode, the
/// 4th on #4) and the suite sends with `send_transactions` only by index 0
/// and only where its load is not running, so no two run at once.
pub const LOAD_KEYS: [usize; 5] = [7, 8, 9, 4, 3];

/// `blobs::send_blob_transactions(.., key_indexes)`: #7, #8, #9, the fault
/// suite's load keys, which never runs on a chain blob tests send to (geth
/// keeps an account with pending blob transactions out of its other pool).
pub const BLOB_KEYS: [usize; 3] = [7, 8, 9];

/// The private key of the `index`-th slot of `slots` (modulo its length).
pub fn key(slots: &[usize], index: usize) -> &'static str {
    DEV_KEYS[slots[index % slots.len()]]
}

/// The test clusters' block-signing key (leader-mode nodes get it as
/// `--signing-key-file`, members pin its public key): RFC 8032's first test
/// key, so its public key is a known constant.
pub const SIGNING_KEY: &str = "0x9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
/// Another cluster's key: its blocks are valid, but no member of the
/// default test cluster pins it.
pub const OTHER_SIGNING_KEY: &str = "0x4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";

/// The public key of a signing key given as hex.
pub fn public_key(signing_key: &str) -> String {
    clnode::signing::BlockSigningKey::from_hex(signing_key).unwrap().public_key().to_hex()
}
