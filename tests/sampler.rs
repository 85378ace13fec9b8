//! The sampler on hand-built logits: greedy, seeded reproducibility, the distribution it
//! draws from, each filter, the repetition penalty, log-probabilities, batches and
//! parameter validation. Every random test is seeded, so results are fixed run to run;
//! tolerances are several standard deviations wide all the same.
use mlxrun::engine::sampler::{SampledToken, Sampler, SamplerParams};
use mlxrun::mlx::{random, Array, Dtype};
use mlxrun::Error;

fn arr(v: &[f32]) -> Array {
    Array::from_slice(v, &[v.len() as i32]).unwrap()
}

fn ln(p: &[f32]) -> Vec<f32> {
    p.iter().map(|x| x.ln()).collect()
}

/// Serialises the tests that touch MLX's global generator (tests run on parallel threads).
static GLOBAL_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn sampler(p: SamplerParams) -> Sampler {
    Sampler::new(p).unwrap()
}

fn seeded(temperature: f32, seed: u64) -> SamplerParams {
    SamplerParams { temperature, seed: Some(seed), ..Default::default() }
}

fn draws(s: &mut Sampler, logits: &Array, n: usize) -> Vec<u32> {
    (0..n).map(|_| s.sample(logits, &[]).unwrap().token).collect()
}

fn freqs(tokens: &[u32], vocab: usize) -> Vec<f64> {
    let mut c = vec![0.0; vocab];
    for &t in tokens {
        c[t as usize] += 1.0;
    }
    c.iter().map(|x| x / tokens.len() as f64).collect()
}

fn host_argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn host_log_softmax(v: &[f32]) -> Vec<f64> {
    let m = v.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let lse = m + v.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
    v.iter().map(|&x| x as f64 - lse).collect()
}

/// The mlx-lm / HF rule, on the host.
fn host_penalise(v: &[f32], seen: &[u32], penalty: f32) -> Vec<f32> {
    let mut out = v.to_vec();
    for (i, x) in out.iter_mut().enumerate() {
        if seen.contains(&(i as u32)) {
            *x = if *x < 0.0 { *x * penalty } else { *x / penalty };
        }
    }
    out
}

#[test]
fn greedy_is_argmax_of_the_logits() {
    let cases: Vec<Vec<f32>> = vec![
        vec![0.1, 2.5, -1.0, 2.4, 0.0, 1.0, -3.0, 2.49],
        vec![-5.0, -4.0, -3.5, -3.6, -10.0, -4.1, -7.0, -9.0, -3.51, -6.0],
        vec![3.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 7.5],
    ];
    let mut s = sampler(SamplerParams::default());
    for v in &cases {
        let want = host_argmax(v);
        let a = arr(v);
        assert_eq!(s.sample(&a, &[]).unwrap().token, want, "[vocab] {v:?}");
        let a2 = a.reshape(&[1, -1]).unwrap();
        assert_eq!(s.sample(&a2, &[]).unwrap().token, want, "[1, vocab] {v:?}");
        for dt in [Dtype::Bf16, Dtype::F16] {
            assert_eq!(s.sample(&a.astype(dt).unwrap(), &[]).unwrap().token, want, "{dt} {v:?}");
        }
        // Without a penalty the history plays no part.
        assert_eq!(s.sample(&a, &[want, want, 1]).unwrap().token, want);
    }
}

#[test]
fn greedy_ties_go_to_the_lowest_index() {
    let mut s = sampler(SamplerParams::default());
    assert_eq!(s.sample(&arr(&[1.0, 4.0, 2.0, 4.0, 4.0, 0.0, -1.0, 3.0]), &[]).unwrap().token, 1);
    assert_eq!(s.sample(&arr(&[0.0; 8]), &[]).unwrap().token, 0);
    assert_eq!(s.sample(&arr(&[-2.0, -1.0, -1.0, -1.0, -3.0, -9.0, -1.5, -1.0]), &[]).unwrap().token, 1);
}

#[test]
fn greedy_ignores_filters_and_seed() {
    let v = [0.3, 1.7, -0.4, 1.2, 0.9, 0.0, 1.69, -2.0];
    let p = SamplerParams { top_k: 2, top_p: 0.3, min_p: 0.5, seed: Some(1), ..Default::default() };
    let mut s = sampler(p);
    assert_eq!(s.sample(&arr(&v), &[]).unwrap().token, 1);
}

#[test]
fn seeded_sampling_repeats_exactly() {
    let logits = arr(&[0.5, 0.2, -0.3, 1.0, 0.0, 0.7, -1.0, 0.1, 0.4, 0.3]);
    let p = SamplerParams { temperature: 0.9, top_k: 8, top_p: 0.95, seed: Some(1234), ..Default::default() };
    let a = draws(&mut sampler(p.clone()), &logits, 200);
    let b = draws(&mut sampler(p.clone()), &logits, 200);
    assert_eq!(a, b);
    assert!(a.iter().collect::<std::collections::HashSet<_>>().len() > 3, "draws should vary: {a:?}");

    // The lazy path consumes the same random sequence.
    let mut s = sampler(p.clone());
    let lazy: Vec<u32> = (0..200)
        .map(|_| s.sample_lazy(&logits, &[]).unwrap().token.item::<u32>().unwrap())
        .collect();
    assert_eq!(a, lazy);

    // reset() starts the sequence again.
    let mut s = sampler(p);
    let first = draws(&mut s, &logits, 50);
    s.reset().unwrap();
    assert_eq!(first, draws(&mut s, &logits, 50));
    assert_eq!(first, a[..50]);
}

#[test]
fn seeded_sampling_ignores_the_global_generator() {
    let _g = GLOBAL_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let logits = arr(&ln(&[0.25, 0.25, 0.25, 0.25]));
    let a = draws(&mut sampler(seeded(1.0, 77)), &logits, 100);
    let mut s = sampler(seeded(1.0, 77));
    let b: Vec<u32> = (0..100)
        .map(|i| {
            random::seed(i).unwrap();
            // Draws from the global generator in between must not disturb the sampler.
            random::uniform(0.0, 1.0, &[3], Dtype::F32, None).unwrap().eval().unwrap();
            s.sample(&logits, &[]).unwrap().token
        })
        .collect();
    assert_eq!(a, b);
}

#[test]
fn unseeded_sampling_follows_the_global_seed() {
    let _g = GLOBAL_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let logits = arr(&ln(&[0.25, 0.25, 0.25, 0.25]));
    let p = SamplerParams { temperature: 1.0, ..Default::default() };
    random::seed(5).unwrap();
    let a = draws(&mut sampler(p.clone()), &logits, 60);
    random::seed(5).unwrap();
    let b = draws(&mut sampler(p), &logits, 60);
    assert_eq!(a, b);
}

#[test]
fn different_seeds_give_different_sequences() {
    let logits = arr(&[0.0; 16]);
    let a = draws(&mut sampler(seeded(1.0, 1)), &logits, 40);
    let b = draws(&mut sampler(seeded(1.0, 2)), &logits, 40);
    let c = draws(&mut sampler(seeded(1.0, 3)), &logits, 40);
    // Equal 40-token sequences over 16 equally likely tokens would be a 16^-40 event.
    assert_ne!(a, b);
    assert_ne!(a, c);
    assert_ne!(b, c);
}

#[test]
fn same_seed_samplers_interleaved_match_running_alone() {
    let l1 = arr(&[0.1, 0.9, 0.3, -0.2, 0.5, 0.0, 0.2, 0.4]);
    let l2 = arr(&[1.0, -1.0, 0.5, 0.5, 0.0, 0.3, -0.3, 0.8]);
    let p = SamplerParams { temperature: 1.3, seed: Some(99), ..Default::default() };
    let alone1 = draws(&mut sampler(p.clone()), &l1, 100);
    let alone2 = draws(&mut sampler(p.clone()), &l2, 100);
    let (mut s1, mut s2) = (sampler(p.clone()), sampler(p));
    let (mut i1, mut i2) = (vec![], vec![]);
    for _ in 0..100 {
        i1.push(s1.sample(&l1, &[]).unwrap().token);
        i2.push(s2.sample(&l2, &[]).unwrap().token);
    }
    assert_eq!(alone1, i1);
    assert_eq!(alone2, i2);
}

#[test]
fn temperature_one_follows_the_distribution() {
    // 4000 draws: each frequency's standard deviation is at most sqrt(.25/4000) = 0.0079,
    // so 0.04 is five of them.
    let p = [0.5f32, 0.3, 0.2];
    let logits = arr(&ln(&p));
    let f = freqs(&draws(&mut sampler(seeded(1.0, 2024)), &logits, 4000), 3);
    for i in 0..3 {
        assert!((f[i] - p[i] as f64).abs() < 0.04, "token {i}: frequency {} vs p {}", f[i], p[i]);
    }
    // Shifting the logits by a constant changes nothing: they are normalised first.
    let shifted = arr(&ln(&p).iter().map(|x| x + 3.0).collect::<Vec<_>>());
    let a = draws(&mut sampler(seeded(1.0, 8)), &logits, 300);
    let b = draws(&mut sampler(seeded(1.0, 8)), &shifted, 300);
    assert_eq!(a, b);
}

#[test]
fn temperature_two_flattens_and_low_temperature_concentrates() {
    let p = [0.5f32, 0.3, 0.2];
    let logits = arr(&ln(&p));
    // At T = 2 the probabilities are sqrt(p) normalised: 0.421, 0.326, 0.253.
    let f = freqs(&draws(&mut sampler(seeded(2.0, 31)), &logits, 4000), 3);
    let z: f64 = p.iter().map(|&x| (x as f64).sqrt()).sum();
    for i in 0..3 {
        let want = (p[i] as f64).sqrt() / z;
        assert!((f[i] - want).abs() < 0.04, "T=2 token {i}: {} vs {want}", f[i]);
    }
    // At T = 0.05 token 1 has relative weight (0.3/0.5)^20 = 3.7e-5.
    let t = draws(&mut sampler(seeded(0.05, 32)), &logits, 500);
    assert!(t.iter().all(|&x| x == 0), "low temperature drew {:?}", freqs(&t, 3));
    // A tiny temperature must not overflow half precision into garbage.
    let mut s = sampler(seeded(1e-4, 33));
    for dt in [Dtype::F16, Dtype::Bf16] {
        for _ in 0..20 {
            assert_eq!(s.sample(&logits.astype(dt).unwrap(), &[]).unwrap().token, 0);
        }
    }
}

#[test]
fn top_k_keeps_only_the_k_most_likely() {
    let v = [0.2, 1.1, -0.5, 0.9, 1.0, 0.0, -1.0, 0.95, 0.3, -0.2];
    let logits = arr(&v);
    // A high temperature flattens what is left so that a leak would show.
    let p = SamplerParams { temperature: 5.0, top_k: 2, seed: Some(3), ..Default::default() };
    let t = draws(&mut sampler(p), &logits, 2000);
    let f = freqs(&t, v.len());
    assert!(t.iter().all(|&x| x == 1 || x == 4), "top-2 drew {f:?}");
    assert!(f[1] > 0.4 && f[4] > 0.4, "both survivors should be drawn: {f:?}");
    // top_k = 1 is greedy; top_k at or above the vocabulary keeps everything.
    let p = SamplerParams { temperature: 5.0, top_k: 1, seed: Some(4), ..Default::default() };
    assert!(draws(&mut sampler(p), &logits, 200).iter().all(|&x| x == 1));
    let p = SamplerParams { temperature: 5.0, top_k: 10, seed: Some(4), ..Default::default() };
    let f = freqs(&draws(&mut sampler(p), &logits, 2000), v.len());
    assert!(f.iter().all(|&x| x > 0.03), "top_k = vocab should keep all: {f:?}");
}

#[test]
fn top_p_keeps_the_nucleus() {
    let p = [0.5f32, 0.3, 0.15, 0.05];
    let logits = arr(&ln(&p));
    let params = SamplerParams { temperature: 1.0, top_p: 0.7, seed: Some(11), ..Default::default() };
    let t = draws(&mut sampler(params), &logits, 3000);
    let f = freqs(&t, 4);
    assert!(t.iter().all(|&x| x < 2), "top-p 0.7 drew {f:?}");
    // Renormalised: 0.625 and 0.375.
    assert!((f[0] - 0.625).abs() < 0.045 && (f[1] - 0.375).abs() < 0.045, "{f:?}");

    // 0.85 needs the third token; 0.4 only the first.
    let params = SamplerParams { temperature: 1.0, top_p: 0.85, seed: Some(12), ..Default::default() };
    let f = freqs(&draws(&mut sampler(params), &logits, 3000), 4);
    assert!(f[3] == 0.0 && f[2] > 0.1, "top-p 0.85 drew {f:?}");
    let params = SamplerParams { temperature: 1.0, top_p: 0.4, seed: Some(13), ..Default::default() };
    assert!(draws(&mut sampler(params), &logits, 300).iter().all(|&x| x == 0));

    // min_tokens_to_keep overrides a nucleus smaller than it.
    let params =
        SamplerParams { temperature: 1.0, top_p: 0.4, min_tokens_to_keep: 3, seed: Some(14), ..Default::default() };
    let f = freqs(&draws(&mut sampler(params), &logits, 3000), 4);
    assert!(f[3] == 0.0 && f[1] > 0.2 && f[2] > 0.08, "top-p 0.4 keep 3 drew {f:?}");
}

#[test]
fn filters_apply_in_mlx_lm_order() {
    // mlx-lm filters top-p, then min-p, then top-k. Over [0.4, 0.3, 0.2, 0.1], top-p 0.75
    // needs the third token (0.4 + 0.3 = 0.7 < 0.75) and top-k 3 then keeps all three;
    // top-k first would leave a renormalised 0.444/0.333/0.222, where 0.75 is reached
    // with two tokens and token 2 would never be drawn.
    let logits = arr(&ln(&[0.4, 0.3, 0.2, 0.1]));
    let params = SamplerParams { temperature: 1.0, top_k: 3, top_p: 0.75, seed: Some(21), ..Default::default() };
    let t = draws(&mut sampler(params), &logits, 3000);
    let f = freqs(&t, 4);
    assert!(f[3] == 0.0 && (f[2] - 0.2 / 0.9).abs() < 0.04, "top-p then top-k drew {f:?}");

    // min-p runs on what top-p left: top-p 0.75 keeps {0, 1, 2}; min-p 0.6 of the best
    // (0.4) cuts at 0.24, leaving {0, 1}.
    let params = SamplerParams { temperature: 1.0, top_p: 0.75, min_p: 0.6, seed: Some(22), ..Default::default() };
    let t = draws(&mut sampler(params), &logits, 2000);
    assert!(t.iter().all(|&x| x < 2), "top-p then min-p drew {:?}", freqs(&t, 4));
}

#[test]
fn min_p_keeps_tokens_near_the_best() {
    // p_max = 0.4, so min-p 0.5 keeps p >= 0.2: tokens 0 and 1 (0.19 falls short).
    let p = [0.4f32, 0.25, 0.19, 0.16];
    let logits = arr(&ln(&p));
    // The filter is applied before temperature: T = 3 must not readmit token 2.
    let params = SamplerParams { temperature: 3.0, min_p: 0.5, seed: Some(5), ..Default::default() };
    let t = draws(&mut sampler(params), &logits, 2000);
    let f = freqs(&t, 4);
    assert!(t.iter().all(|&x| x < 2), "min-p drew {f:?}");
    assert!(f[1] > 0.3, "{f:?}");
    // min_tokens_to_keep = 3 brings token 2 back, not token 3.
    let params = SamplerParams { temperature: 3.0, min_p: 0.5, min_tokens_to_keep: 3, seed: Some(6), ..Default::default() };
    let f = freqs(&draws(&mut sampler(params), &logits, 2000), 4);
    assert!(f[3] == 0.0 && f[2] > 0.15, "min-p keep 3 drew {f:?}");
}

#[test]
fn repetition_penalty_changes_greedy_within_the_window() {
    let v = [2.0, 1.8, 0.5, -1.0, 0.0, 0.3, 1.0, -0.5];
    let logits = arr(&v);
    let p = SamplerParams { repetition_penalty: 1.5, repetition_context_size: 3, ..Default::default() };
    let mut s = sampler(p);
    // Unseen: the top token wins.
    assert_eq!(s.sample(&logits, &[]).unwrap().token, 0);
    assert_eq!(s.sample(&logits, &[4, 5]).unwrap().token, 0);
    // Seen recently: 2.0 / 1.5 = 1.33 < 1.8.
    assert_eq!(s.sample(&logits, &[0]).unwrap().token, 1);
    assert_eq!(s.sample(&logits, &[7, 0, 0, 2]).unwrap().token, 1);
    // Both seen: 1.33 vs 1.2.
    assert_eq!(s.sample(&logits, &[1, 0]).unwrap().token, 0);
    // Seen only before the 3-token window: not penalised.
    assert_eq!(s.sample(&logits, &[0, 4, 5, 6]).unwrap().token, 0);
    // The default window is 20.
    let mut d = sampler(SamplerParams { repetition_penalty: 1.5, ..Default::default() });
    let mut h = vec![0u32];
    h.extend(std::iter::repeat(4).take(19));
    assert_eq!(d.sample(&logits, &h).unwrap().token, 1);
    h.push(4);
    assert_eq!(d.sample(&logits, &h).unwrap().token, 0);
}

#[test]
fn repetition_penalty_multiplies_negative_logits() {
    // -1.0 * 1.5 = -1.5 < -1.2: a penalty never makes a token more likely.
    let logits = arr(&[-1.0, -1.2, -3.0, -4.0, -2.0, -5.0, -6.0, -7.0]);
    let mut s = sampler(SamplerParams { repetition_penalty: 1.5, ..Default::default() });
    assert_eq!(s.sample(&logits, &[0]).unwrap().token, 1);
    // A penalty below 1 rewards repeats instead.
    let logits = arr(&[1.0, 1.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let mut s = sampler(SamplerParams { repetition_penalty: 0.8, ..Default::default() });
    assert_eq!(s.sample(&logits, &[0]).unwrap().token, 0);
    // In half precision too.
    let mut s = sampler(SamplerParams { repetition_penalty: 1.5, ..Default::default() });
    let l = arr(&[2.0, 1.8, 0.5, -1.0, 0.0, 0.3, 1.0, -0.5]).astype(Dtype::Bf16).unwrap();
    assert_eq!(s.sample(&l, &[0]).unwrap().token, 1);
}

#[test]
fn history_tokens_outside_the_vocabulary_are_rejected() {
    let mut s = sampler(SamplerParams { repetition_penalty: 1.2, ..Default::default() });
    let e = s.sample(&arr(&[0.0; 8]), &[3, 8]).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    assert!(e.to_string().contains('8'), "{e}");
}

fn check_logprobs(what: &str, got: &SampledToken, penalised: &[f32], n_top: usize, tol: f64) {
    let lsm = host_log_softmax(penalised);
    let lp = got.logprob.expect("logprob requested") as f64;
    assert!((lp - lsm[got.token as usize]).abs() < tol, "{what}: logprob {lp} vs {}", lsm[got.token as usize]);
    assert_eq!(got.top_logprobs.len(), n_top, "{what}: top count");
    let mut order: Vec<usize> = (0..penalised.len()).collect();
    order.sort_by(|&a, &b| lsm[b].total_cmp(&lsm[a]).then(a.cmp(&b)));
    for (k, &(id, v)) in got.top_logprobs.iter().enumerate() {
        assert_eq!(id as usize, order[k], "{what}: top[{k}] id, got {:?}", got.top_logprobs);
        assert!((v as f64 - lsm[order[k]]).abs() < tol, "{what}: top[{k}] value {v} vs {}", lsm[order[k]]);
    }
}

#[test]
fn logprobs_are_log_softmax_of_the_penalised_logits() {
    let v = [1.5, -0.3, 2.2, 0.7, -2.0, 0.0, 1.9, -0.8, 0.4, 1.1, -1.5, 0.2];
    let history = [2u32, 9, 2];
    let logits = arr(&v);

    // Greedy, no penalty.
    let p = SamplerParams { logprobs: true, top_logprobs: 4, ..Default::default() };
    let got = sampler(p).sample(&logits, &history).unwrap();
    assert_eq!(got.token, 2);
    check_logprobs("greedy", &got, &v, 4, 1e-5);

    // Greedy with a penalty: the log-probabilities are those of the penalised logits.
    let p = SamplerParams { logprobs: true, top_logprobs: 3, repetition_penalty: 1.3, ..Default::default() };
    let got = sampler(p).sample(&logits, &history).unwrap();
    let pen = host_penalise(&v, &history, 1.3);
    assert_eq!(got.token, host_argmax(&pen));
    assert_eq!(got.token, 6);
    check_logprobs("penalised", &got, &pen, 3, 1e-5);

    // Sampling: still the model's (penalised) distribution, before filters and temperature.
    let p = SamplerParams {
        temperature: 0.7,
        top_k: 5,
        top_p: 0.9,
        repetition_penalty: 1.3,
        seed: Some(17),
        logprobs: true,
        top_logprobs: 2,
        ..Default::default()
    };
    let mut s = sampler(p);
    for _ in 0..30 {
        let got = s.sample(&logits, &history).unwrap();
        check_logprobs("sampled", &got, &pen, 2, 1e-5);
    }

    // Half-precision logits: reported in f32, to within the input's rounding.
    let p = SamplerParams { logprobs: true, top_logprobs: 12, ..Default::default() };
    let half = logits.astype(Dtype::Bf16).unwrap();
    let rounded = half.astype(Dtype::F32).unwrap().to_vec::<f32>().unwrap();
    let got = sampler(p.clone()).sample(&half, &[]).unwrap();
    check_logprobs("bf16", &got, &rounded, 12, 1e-4);

    // More alternatives than the vocabulary: capped.
    let p = SamplerParams { logprobs: true, top_logprobs: 50, ..Default::default() };
    assert_eq!(sampler(p).sample(&logits, &[]).unwrap().top_logprobs.len(), v.len());

    // Off by default.
    let got = sampler(SamplerParams::default()).sample(&logits, &[]).unwrap();
    assert_eq!((got.logprob, got.top_logprobs.len()), (None, 0));
}

#[test]
fn lazy_sampling_returns_unread_arrays() {
    let logits = arr(&[0.0, 3.0, 1.0, 2.0, -1.0, 0.5, 0.2, 0.1]);
    let mut s = sampler(SamplerParams { logprobs: true, top_logprobs: 3, ..Default::default() });
    let out = s.sample_lazy(&logits, &[]).unwrap();
    assert_eq!(out.token.shape(), Vec::<i32>::new());
    assert_eq!(out.token.dtype(), Dtype::U32);
    assert_eq!(out.logprob.as_ref().unwrap().shape(), Vec::<i32>::new());
    assert_eq!(out.top_ids.as_ref().unwrap().shape(), vec![3]);
    // The token can feed the next step's graph before it is read.
    let next = out.token.astype(Dtype::I32).unwrap().add(&Array::scalar(10i32).unwrap()).unwrap();
    mlxrun::mlx::async_eval(&out.arrays()).unwrap();
    assert_eq!(next.item::<i32>().unwrap(), 11);
    let read = out.read().unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].token, 1);
    assert_eq!(read[0].top_logprobs.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 3, 2]);

    // [1, vocab] keeps the row axis.
    let out = s.sample_lazy(&logits.reshape(&[1, -1]).unwrap(), &[]).unwrap();
    assert_eq!(out.token.shape(), vec![1]);
    assert_eq!(out.top_ids.as_ref().unwrap().shape(), vec![1, 3]);
}

#[test]
fn batches_sample_each_row() {
    let rows: Vec<Vec<f32>> = vec![
        vec![0.0, 3.0, 1.0, 2.0, -1.0, 0.5, 0.2, 0.1],
        vec![5.0, 4.9, 1.0, 2.0, -1.0, 0.5, 0.2, 0.1],
        vec![-1.0, -2.0, -3.0, -0.5, -4.0, -5.0, -0.6, -7.0],
    ];
    let flat: Vec<f32> = rows.concat();
    let logits = Array::from_slice(&flat, &[3, 8]).unwrap();

    let mut s = sampler(SamplerParams { logprobs: true, top_logprobs: 2, ..Default::default() });
    let got = s.sample_batch(&logits, &[]).unwrap();
    assert_eq!(got.iter().map(|t| t.token).collect::<Vec<_>>(), vec![1, 0, 3]);
    for (r, t) in got.iter().enumerate() {
        check_logprobs(&format!("row {r}"), t, &rows[r], 2, 1e-5);
    }

    // Each row gets its own history; an empty one is left alone.
    let mut s = sampler(SamplerParams { repetition_penalty: 2.0, ..Default::default() });
    let h: [&[u32]; 3] = [&[], &[0, 0, 7], &[3]];
    let got = s.sample_batch(&logits, &h).unwrap();
    for (r, t) in got.iter().enumerate() {
        assert_eq!(t.token, host_argmax(&host_penalise(&rows[r], h[r], 2.0)), "row {r}");
    }
    assert_eq!(got.iter().map(|t| t.token).collect::<Vec<_>>(), vec![1, 1, 6]);
    let lazy = s.sample_batch_lazy(&logits, &h).unwrap();
    assert_eq!(lazy.token.shape(), vec![3]);

    // A seeded batch repeats, and its rows are drawn independently.
    let uniform = Array::zeros(&[4000, 3], Dtype::F32).unwrap();
    let a = sampler(seeded(1.0, 9)).sample_batch(&uniform, &[]).unwrap();
    let b = sampler(seeded(1.0, 9)).sample_batch(&uniform, &[]).unwrap();
    assert_eq!(a, b);
    let f = freqs(&a.iter().map(|t| t.token).collect::<Vec<_>>(), 3);
    assert!(f.iter().all(|&x| (x - 1.0 / 3.0).abs() < 0.04), "{f:?}");

    // Shape and count mismatches.
    assert!(s.sample_batch(&logits, &[&[], &[]]).is_err());
    assert!(s.sample_batch(&arr(&[0.0; 8]), &[]).is_err());
    assert!(s.sample(&logits, &[]).is_err());
}

#[test]
fn bad_logits_are_rejected() {
    let mut s = sampler(SamplerParams::default());
    let ints = Array::from_slice(&[1i32, 2, 3], &[3]).unwrap();
    let e = s.sample(&ints, &[]).unwrap_err();
    assert!(e.to_string().contains("int32"), "{e}");
    let cube = Array::zeros(&[1, 1, 8], Dtype::F32).unwrap();
    assert!(s.sample(&cube, &[]).is_err());
    let empty = Array::zeros(&[0], Dtype::F32).unwrap();
    assert!(s.sample(&empty, &[]).is_err());
}

#[test]
fn invalid_params_name_the_field() {
    let d = SamplerParams::default;
    let cases: Vec<(SamplerParams, &str, &str)> = vec![
        (SamplerParams { temperature: -0.5, ..d() }, "temperature", "-0.5"),
        (SamplerParams { temperature: f32::NAN, ..d() }, "temperature", "NaN"),
        (SamplerParams { temperature: f32::INFINITY, ..d() }, "temperature", "inf"),
        (SamplerParams { top_k: -1, ..d() }, "top_k", "-1"),
        (SamplerParams { top_p: 0.0, ..d() }, "top_p", "0"),
        (SamplerParams { top_p: 1.5, ..d() }, "top_p", "1.5"),
        (SamplerParams { top_p: -0.2, ..d() }, "top_p", "-0.2"),
        (SamplerParams { min_p: 1.0, ..d() }, "min_p", "1"),
        (SamplerParams { min_p: -0.1, ..d() }, "min_p", "-0.1"),
        (SamplerParams { min_tokens_to_keep: 0, ..d() }, "min_tokens_to_keep", "0"),
        (SamplerParams { repetition_penalty: 0.0, ..d() }, "repetition_penalty", "0"),
        (SamplerParams { repetition_penalty: -1.2, ..d() }, "repetition_penalty", "-1.2"),
        (SamplerParams { repetition_context_size: 0, ..d() }, "repetition_context_size", "0"),
        (SamplerParams { top_logprobs: 5, ..d() }, "top_logprobs", "5"),
    ];
    for (p, field, value) in cases {
        let e = Sampler::new(p.clone()).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{p:?}: {e:?}");
        let msg = e.to_string();
        assert!(msg.contains(field) && msg.contains(value), "{p:?}: message {msg:?} should name {field} and {value}");
        assert_eq!(p.validate().unwrap_err(), e);
    }
    // The edges that are allowed.
    for p in [
        SamplerParams { top_p: 1.0, min_p: 0.0, top_k: 0, ..d() },
        SamplerParams { temperature: 0.0, ..d() },
        SamplerParams { top_p: 1e-6, min_p: 0.999, repetition_penalty: 0.5, ..d() },
        SamplerParams { logprobs: true, top_logprobs: 0, ..d() },
    ] {
        Sampler::new(p).unwrap();
    }
    assert!(SamplerParams::default().is_greedy());
    assert_eq!(SamplerParams::default(), SamplerParams::greedy());
}

/// The greedy shortcut (argmax of the logits, the log-softmax only when rounding could
/// merge the maximum with an earlier entry) gives the tokens of the full path, the argmax
/// of `logits - logsumexp(logits)` as mlx-lm takes it, including where that rounding does
/// merge them.
#[test]
fn greedy_shortcut_gives_the_log_softmax_argmax() {
    let vocab = 4096;
    let spread: Vec<f32> = (0..vocab).map(|i| ((i * 7919 % 1000) as f32) / 250.0 - 2.0).collect();
    // Every entry near the maximum: logsumexp is about max + ln(4096), and at that
    // magnitude an entry one ulp below the maximum rounds to the same log-probability.
    let mut merged = vec![0.5f32; vocab];
    merged[0] = f32::from_bits(0.5f32.to_bits() - 1);
    merged[1..].iter_mut().for_each(|x| *x = 0.25);
    merged[5] = 0.5;
    let mut tied = spread.clone();
    tied[3] = 9.0;
    tied[7] = 9.0;
    let mut infinite = spread.clone();
    infinite[11] = f32::INFINITY;
    let mut all_low = vec![f32::NEG_INFINITY; vocab];
    all_low[2] = -1.0;
    let rows = [spread, merged.clone(), tied, infinite, all_low];
    let flat: Vec<f32> = rows.concat();
    let logits = Array::from_slice(&flat, &[rows.len() as i32, vocab as i32]).unwrap();

    let mut s = sampler(SamplerParams::default());
    assert!(s.greedy_shortcut_applies(&logits));
    let full: Vec<u32> = s.sample_batch(&logits, &[]).unwrap().iter().map(|t| t.token).collect();
    let fast = s.sample_batch_greedy_now(&logits, &[]).unwrap().token.to_vec::<u32>().unwrap();
    assert_eq!(fast, full);
    // The merged row really is one where the plain argmax differs.
    assert_eq!(host_argmax(&merged), 5);
    assert_eq!(full[1], 0);
    assert_eq!(full[2], 3);

    // With a repetition penalty the penalised logits decide, as on the full path.
    let mut p = sampler(SamplerParams { repetition_penalty: 4.0, ..Default::default() });
    let hist: Vec<&[u32]> = vec![&[1, 2], &[0], &[3], &[], &[2]];
    let full: Vec<u32> = p.sample_batch(&logits, &hist).unwrap().iter().map(|t| t.token).collect();
    let fast = p.sample_batch_greedy_now(&logits, &hist).unwrap().token.to_vec::<u32>().unwrap();
    assert_eq!(fast, full);
    assert_eq!(full[2], 7);
}

#[test]
fn greedy_shortcut_only_where_it_gives_the_same_result() {
    let logits = Array::from_slice(&[0.0f32, 1.0, 2.0, 3.0], &[2, 2]).unwrap();
    assert!(sampler(SamplerParams::default()).greedy_shortcut_applies(&logits));
    assert!(!sampler(SamplerParams { logprobs: true, ..Default::default() }).greedy_shortcut_applies(&logits));
    assert!(!sampler(seeded(0.7, 1)).greedy_shortcut_applies(&logits));
    let half = logits.astype(Dtype::Bf16).unwrap();
    assert!(!sampler(SamplerParams::default()).greedy_shortcut_applies(&half));
}
