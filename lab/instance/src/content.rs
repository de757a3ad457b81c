//! Deterministic content: every byte of a lab instance follows from its seed, a label and a day,
//! so two runs with the same seed build the same instance and benchmarks are repeatable.

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// A generator for one named stream of content (e.g. "packages/Acme.Web/1.0.3").
pub fn stream(seed: u64, label: &str) -> ChaCha8Rng {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(label.as_bytes());
    let digest = h.finalize();
    let mut key = [0u8; 32];
    key.copy_from_slice(&digest);
    ChaCha8Rng::from_seed(key)
}

pub fn size_in(rng: &mut ChaCha8Rng, lo: u64, hi: u64) -> u64 {
    if hi <= lo {
        lo
    } else {
        rng.random_range(lo..=hi)
    }
}

/// Incompressible bytes, like the zip/nupkg files in the built-in package feed.
pub fn random_bytes(rng: &mut ChaCha8Rng, len: u64) -> Vec<u8> {
    let mut buf = vec![0u8; len as usize];
    rng.fill_bytes(&mut buf);
    buf
}

const STEPS: &[&str] = &[
    "Acquire packages",
    "Deploy Web App",
    "Run database migrations",
    "Apply retention policies",
    "Health check",
    "Notify Slack",
    "Swap deployment slots",
];
const TARGETS: &[&str] = &[
    "web-01",
    "web-02",
    "api-01",
    "worker-03",
    "k8s-prod",
    "db-migrator",
];

/// Task log text in the shape Octopus writes: timestamped lines, step headers, verbose output.
pub fn task_log_text(rng: &mut ChaCha8Rng, task_number: u64, len: u64) -> Vec<u8> {
    let mut out = String::with_capacity(len as usize + 256);
    let mut minute = rng.random_range(0..60u32);
    let mut second = 0u32;
    out.push_str(&format!(
        "Task ID:        ServerTasks-{task_number}\nRelated IDs:    Deployments-{}, Channels-1, Releases-{}, Projects-{}, Spaces-1, Environments-{}\nTask status:    Success\n\n",
        task_number + 7,
        task_number / 3,
        rng.random_range(1..40u32),
        rng.random_range(1..5u32)
    ));
    while (out.len() as u64) < len {
        let step = STEPS[rng.random_range(0..STEPS.len())];
        let target = TARGETS[rng.random_range(0..TARGETS.len())];
        second += rng.random_range(1..9u32);
        if second >= 60 {
            second -= 60;
            minute = (minute + 1) % 60;
        }
        let level = if rng.random_bool(0.05) {
            "WARN "
        } else {
            "INFO "
        };
        out.push_str(&format!(
            "12:{minute:02}:{second:02}   {level} |   [{target}] {step}: processed {} items in {} ms (checksum {:08x})\n",
            rng.random_range(1..5000u32),
            rng.random_range(1..90_000u32),
            rng.next_u32()
        ));
    }
    out.truncate(len as usize);
    out.into_bytes()
}

/// Event export lines: JSON, one audit event a line, as Octopus's audit stream export writes.
pub fn event_export_text(rng: &mut ChaCha8Rng, day: u32, len: u64) -> Vec<u8> {
    let mut out = String::with_capacity(len as usize + 256);
    let mut n = 0u64;
    while (out.len() as u64) < len {
        n += 1;
        out.push_str(&format!(
            "{{\"Id\":\"Events-{day}{n:06}\",\"Category\":\"{}\",\"UserId\":\"Users-{}\",\"Message\":\"{} {}\",\"Occurred\":\"day {day} +{}s\"}}\n",
            ["DeploymentSucceeded", "Modified", "Created", "LoginSucceeded"][rng.random_range(0..4usize)],
            rng.random_range(1..60u32),
            STEPS[rng.random_range(0..STEPS.len())],
            TARGETS[rng.random_range(0..TARGETS.len())],
            rng.random_range(0..86_400u32),
        ));
    }
    out.truncate(len as usize);
    out.into_bytes()
}
