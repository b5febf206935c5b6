//! Admission: whether a request gets in. Who sent it ([`token`]), whether it fits its
//! limits ([`limits`]), and whether it was seen before ([`intake_records`]).
//!
//! Admitting one intake request in one Redis round trip: its `Idempotency-Key` looked up
//! first (a stored request is answered as before, never charged or judged again), then the
//! token's sliding-window limit (see [`limits`]), then, for an admitted valid lead,
//! its `queued` intake record and the claim of its key, all in one script.
//!
//! The record is written before the publish: nobody knows the intake id until the 202, and
//! a failed publish deletes the record and releases the key's lock (a second round trip
//! only on that rare path). A request with an `Idempotency-Key` completes its key after the
//! broker's confirm; a plain request costs Redis exactly one call.

use crate::infra::redis_client::{RedisClient, Unavailable};
use limits::{Decision, Limiter, WINDOW, sliding_window_script};
use shared::intake::{QUEUED_RECORD_TTL_SECS, QueuedIntake};
use uuid::Uuid;

pub mod intake_records;
pub mod limits;
pub mod token;

use intake_records::{ClaimedKey, IntakeRecords};

/// KEYS[1]: the token's sorted set; KEYS[2]: the intake's record; KEYS[3], KEYS[4]
/// (optional): the idempotency key and its lock. ARGV: limit, window in ms, a unique member
/// (the limiter's), whether the lead is valid (1/0), the record's JSON, its TTL in s, the
/// lock's value, its TTL in ms, the key's `open:<intake id>` value, its TTL in ms.
/// Returns {2, stored value} for a known key (`pending:` while its lock is held; a key
/// left `open:` by this very intake id is this request's retry, and is claimed again),
/// else the limiter's reply.
const ADMIT: &str = sliding_window_script!(
    r"
if KEYS[3] then
  if redis.call('EXISTS', KEYS[4]) == 1 then return {2, 'pending:'} end
  local v = redis.call('GET', KEYS[3])
  if v and v ~= ARGV[9] then return {2, v} end
end",
    r"
  if ARGV[4] == '1' then
    redis.call('SET', KEYS[2], ARGV[5], 'EX', ARGV[6])
    if KEYS[3] then
      redis.call('SET', KEYS[3], ARGV[9], 'PX', ARGV[10])
      redis.call('SET', KEYS[4], ARGV[7], 'PX', ARGV[8])
    end
  end"
);

/// What Redis said of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    /// An earlier request with the same key holds it: its value (see
    /// [`IntakeRecords::interpret`]).
    Known(String),
    /// Counted against the limit; refused when `decision.admitted` is false. For an
    /// admitted valid lead, its record is written and its key (if any) claimed.
    Counted {
        decision: Decision,
        claimed: Option<ClaimedKey>,
    },
}

/// One intake request as the admission script sees it.
pub struct Request<'a> {
    pub token_id: i64,
    pub limit: u32,
    /// Whether the lead parsed; an invalid one is counted, nothing else.
    pub valid: bool,
    pub record: &'a QueuedIntake,
    pub idempotency_key: Option<&'a str>,
}

/// The admission script, loaded once per Redis server (EVALSHA afterwards).
pub struct Admission {
    script: redis::Script,
}

impl Default for Admission {
    fn default() -> Self {
        Self {
            script: redis::Script::new(ADMIT),
        }
    }
}

impl Admission {
    pub async fn admit(
        &self,
        redis: &RedisClient,
        limiter: &Limiter,
        records: &IntakeRecords,
        req: Request<'_>,
    ) -> Result<Admitted, Unavailable> {
        let rate_key = limiter.intake_key(req.token_id);
        let record_key = records.status_key(req.record.intake_id);
        let claim = req
            .idempotency_key
            .map(|key| records.claim_for(req.token_id, key, req.record.intake_id));
        let json = serde_json::to_string(req.record).map_err(|_| Unavailable)?;
        let mut invocation = self.script.key(&rate_key);
        invocation.key(&record_key);
        if let Some(c) = &claim {
            invocation.key(c.redis_key());
            invocation.key(c.lock_key());
        }
        invocation
            .arg(req.limit)
            .arg(WINDOW.as_millis() as u64)
            .arg(Uuid::new_v4().simple().to_string())
            .arg(u8::from(req.valid))
            .arg(json)
            .arg(QUEUED_RECORD_TTL_SECS)
            .arg(claim.as_ref().map(ClaimedKey::holder).unwrap_or_default())
            .arg(records.claim_ttl_ms())
            .arg(claim.as_ref().map(ClaimedKey::open).unwrap_or_default())
            .arg(records.key_ttl_ms());
        let mut conn = redis.conn();
        let reply: redis::Value = redis
            .run("admission", async {
                invocation.invoke_async(&mut conn).await
            })
            .await?;
        let redis::Value::Array(items) = reply else {
            return Err(Unavailable);
        };
        let int = |i: usize| match items.get(i) {
            Some(redis::Value::Int(n)) => Some(*n),
            _ => None,
        };
        if int(0) == Some(2) {
            return match items.get(1) {
                Some(redis::Value::BulkString(v)) => {
                    Ok(Admitted::Known(String::from_utf8_lossy(v).into_owned()))
                }
                _ => Err(Unavailable),
            };
        }
        let (Some(admitted), Some(remaining), Some(wait_us), Some(now_us)) =
            (int(0), int(1), int(2), int(3))
        else {
            return Err(Unavailable);
        };
        let decision = Decision::from_script(req.limit, admitted, remaining, wait_us, now_us);
        let claimed = (decision.admitted && req.valid).then_some(claim).flatten();
        Ok(Admitted::Counted { decision, claimed })
    }
}
