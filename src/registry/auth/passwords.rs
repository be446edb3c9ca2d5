//! Checking Basic passwords against bcrypt hashes so that refusals are
//! cheap and say nothing about who exists.
//!
//! - Clients send Basic credentials with every request and bcrypt is slow
//!   by design, so each verdict is cached for a while, right or wrong. A
//!   client retrying a wrong password (a misconfigured job, a flood) costs
//!   one bcrypt run, not one per request.
//! - Cache entries are keyed by HMAC-SHA256 of (user, password) under a
//!   key drawn at start and never stored: the cache holds nothing that
//!   can be brute-forced offline, and since nobody without the key can
//!   compute an entry's key, the timing of a map lookup tells an attacker
//!   nothing about passwords. The verdict itself comes from
//!   `bcrypt::verify`, which compares in constant time.
//! - An unknown user is checked against a dummy hash, made once at start
//!   at the cost most of the users' hashes have, so refusing an unknown
//!   user takes as long as refusing a known one with a wrong password.
//! - At most a few bcrypt runs go at once (half the cores): a flood of
//!   distinct wrong passwords queues there instead of taking every core,
//!   and requests whose verdict is cached never wait for it. After a
//!   permit is granted, the caches are read again, so a burst of the same
//!   wrong password still runs bcrypt once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Semaphore;

/// How long a verdict is remembered. The users are read at start, so a
/// verdict cannot go stale before a restart; the limit bounds memory.
const VERDICT_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Entries per cache; when full, expired entries go, then all of them.
const CACHE_CAPACITY: usize = 4096;

/// The users' hashes and what is remembered of past checks.
pub struct PasswordCheck {
    hashes: HashMap<String, String>,
    dummy: String,
    key: [u8; 32],
    verified: Mutex<Verdicts>,
    refused: Mutex<Verdicts>,
    bcrypt_runs: Semaphore,
}

#[derive(Default)]
struct Verdicts(HashMap<[u8; 32], Instant>);

impl Verdicts {
    fn holds(&self, key: &[u8; 32]) -> bool {
        self.0.get(key).is_some_and(|until| *until > Instant::now())
    }

    fn insert(&mut self, key: [u8; 32]) {
        let now = Instant::now();
        if self.0.len() >= CACHE_CAPACITY {
            self.0.retain(|_, until| *until > now);
            if self.0.len() >= CACHE_CAPACITY {
                self.0.clear();
            }
        }
        self.0.insert(key, now + VERDICT_LIFETIME);
    }
}

impl PasswordCheck {
    /// For `users` (name, bcrypt hash).
    pub fn new<'a>(users: impl IntoIterator<Item = (&'a str, &'a str)>) -> PasswordCheck {
        let hashes: HashMap<String, String> = users
            .into_iter()
            .map(|(u, h)| (u.to_string(), h.to_string()))
            .collect();
        let cost = usual_cost(hashes.values().map(String::as_str));
        let dummy_password = hex::encode(rand::random::<[u8; 16]>());
        let dummy = bcrypt::hash(dummy_password, cost).expect("bcrypt of a dummy password");
        let runs = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1));
        PasswordCheck {
            hashes,
            dummy,
            key: rand::random(),
            verified: Mutex::default(),
            refused: Mutex::default(),
            bcrypt_runs: Semaphore::new(runs),
        }
    }

    /// Whether `password` is `user`'s.
    pub async fn check(&self, user: &str, password: &str) -> bool {
        let key = self.cache_key(user, password);
        if let Some(verdict) = self.remembered(&key) {
            return verdict;
        }
        let Ok(_permit) = self.bcrypt_runs.acquire().await else {
            return false;
        };
        if let Some(verdict) = self.remembered(&key) {
            return verdict;
        }
        let known = self.hashes.get(user);
        let hash = known.unwrap_or(&self.dummy).clone();
        let password = password.to_string();
        let matches = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or(false);
        let ok = matches && known.is_some();
        let cache = if ok { &self.verified } else { &self.refused };
        lock(cache).insert(key);
        ok
    }

    fn remembered(&self, key: &[u8; 32]) -> Option<bool> {
        if lock(&self.verified).holds(key) {
            Some(true)
        } else if lock(&self.refused).holds(key) {
            Some(false)
        } else {
            None
        }
    }

    fn cache_key(&self, user: &str, password: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        // Length-prefixed, so ("a:b", "c") and ("a", "b:c") differ.
        mac.update(&(user.len() as u64).to_be_bytes());
        mac.update(user.as_bytes());
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

fn lock(verdicts: &Mutex<Verdicts>) -> std::sync::MutexGuard<'_, Verdicts> {
    verdicts.lock().unwrap_or_else(|p| p.into_inner())
}

/// The cost most `hashes` have (the lowest among equals), or 10 for none.
fn usual_cost<'a>(hashes: impl Iterator<Item = &'a str>) -> u32 {
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for hash in hashes {
        if let Ok(parts) = hash.parse::<bcrypt::HashParts>() {
            *counts.entry(parts.get_cost()).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|(cost, n)| (*n, std::cmp::Reverse(*cost)))
        .map_or(10, |(cost, _)| cost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verdicts_are_right_and_remembered() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let check = PasswordCheck::new([("zuul", hash.as_str())]);
        assert!(check.check("zuul", "pw").await);
        assert!(check.check("zuul", "pw").await);
        assert!(!check.check("zuul", "nope").await);
        assert!(!check.check("nobody", "pw").await);
        // The dummy hash never lets anyone in, whatever the password.
        assert!(!check.check("nobody", "").await);
        assert!(lock(&check.verified).holds(&check.cache_key("zuul", "pw")));
        assert!(lock(&check.refused).holds(&check.cache_key("zuul", "nope")));
        assert_ne!(check.cache_key("a:b", "c"), check.cache_key("a", "b:c"));
    }

    #[test]
    fn the_dummy_costs_what_most_users_cost() {
        let h = |cost| bcrypt::hash("x", cost).unwrap();
        let (four, five) = (h(4), h(5));
        assert_eq!(
            usual_cost([four.as_str(), five.as_str(), five.as_str()].into_iter()),
            5
        );
        assert_eq!(usual_cost(std::iter::empty()), 10);
    }
}
