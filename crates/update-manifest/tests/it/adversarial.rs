//! Property tests: whatever the bytes, verify() never panics and never
//! accepts anything but the exact bytes that were signed.

use proptest::prelude::*;
use update_manifest::{HardwareRevision, KeyId, Model, Rejection, SignedManifest, Version, verify};

use crate::common::*;

fn good() -> Vec<u8> {
    let signer = key("signer-2027");
    sign(manifest(&signer), &signer, keyring_v1())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_refused_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        prop_assert!(verify(&bytes, &trusted_root(), &facts(), now()).is_err());
    }

    #[test]
    fn any_single_byte_change_of_a_good_manifest_is_refused(pos in any::<prop::sample::Index>(), xor in 1u8..=255) {
        let mut bytes = good();
        let i = pos.index(bytes.len());
        bytes[i] ^= xor;
        prop_assert!(verify(&bytes, &trusted_root(), &facts(), now()).is_err());
    }

    #[test]
    fn inserting_or_deleting_a_byte_is_refused(pos in any::<prop::sample::Index>(), b in any::<u8>(), insert in any::<bool>()) {
        let mut bytes = good();
        let i = pos.index(bytes.len());
        if insert { bytes.insert(i, b) } else { bytes.remove(i); }
        prop_assert!(verify(&bytes, &trusted_root(), &facts(), now()).is_err());
    }

    #[test]
    fn whitespace_anywhere_makes_it_non_canonical(pos in any::<prop::sample::Index>(), ws in prop::sample::select(vec![" ", "\n", "\t", "\r\n"])) {
        // Inserted between tokens (after a ',' or ':') it is still valid JSON.
        let s = String::from_utf8(good()).unwrap();
        let cuts: Vec<usize> = s.match_indices([',', ':']).map(|(i, _)| i + 1).collect();
        let at = cuts[pos.index(cuts.len())];
        let mut t = s.clone();
        t.insert_str(at, ws);
        let r = verify(t.as_bytes(), &trusted_root(), &facts(), now());
        // Inside a timestamp (':' in the time) it breaks the field instead.
        prop_assert!(matches!(r, Err(Rejection::NonCanonical) | Err(Rejection::Malformed { .. })), "{r:?}");
    }

    // A product name may be 128 characters; anything longer must be refused.
    #[test]
    fn huge_fields_are_refused_before_or_while_parsing(len in 129usize..200_000) {
        let s = String::from_utf8(good()).unwrap();
        let t = s.replacen("Hearth Reference Hub", &"x".repeat(len), 1);
        let r = verify(t.as_bytes(), &trusted_root(), &facts(), now());
        prop_assert!(matches!(r, Err(Rejection::TooLarge { .. }) | Err(Rejection::Malformed { .. })), "{r:?}");
    }

    #[test]
    fn unknown_key_ids_are_refused(id in proptest::array::uniform32(any::<u8>())) {
        let signer = key("signer-2027");
        let mut signed = manifest(&signer).sign(&signer, keyring_v1()).unwrap();
        signed.manifest.key_id = KeyId::from_bytes(id);
        let r = verify(&signed.to_json(), &trusted_root(), &facts(), now());
        prop_assert!(matches!(r, Err(Rejection::UnknownKey { .. })), "{r:?}");
    }

    #[test]
    fn signed_manifests_round_trip_byte_for_byte(
        v in (0u32..1000, 0u32..1000, 0u32..1000),
        sec in 2u32..1000,
        model in "[A-Za-z][A-Za-z0-9_-]{0,20}",
        revs in proptest::collection::vec("[A-Za-z0-9._-]{1,10}", 1..5),
        size in 0u64..(64 << 20),
        product in "[ -~]{1,40}",
    ) {
        let signer = key("signer-2027");
        let mut m = manifest(&signer);
        m.version = Version::new(v.0 + 2, v.1, v.2);
        m.security_version = sec;
        m.model = model.parse::<Model>().unwrap();
        m.hardware_revisions = revs.iter().map(|r| r.parse::<HardwareRevision>().unwrap()).collect();
        m.artifact.size = size;
        m.artifact.index.size =
            update_manifest::ChunkIndex::encoded_len(size, m.artifact.index.chunk_len);
        m.product = product.parse().unwrap();
        let bytes = sign(m.clone(), &signer, keyring_v1());
        let parsed = SignedManifest::from_json(&bytes).unwrap();
        prop_assert_eq!(&parsed.manifest, &m);
        prop_assert_eq!(parsed.to_json(), bytes.clone());
        let mut device = facts();
        device.model = m.model.clone();
        device.hardware_revision = m.hardware_revisions[0].clone();
        let r = verify(&bytes, &trusted_root(), &device, now());
        prop_assert!(r.is_ok(), "{r:?}");
    }

    #[test]
    fn versions_parse_what_they_print_and_order_like_tuples(a in (any::<u32>(), any::<u32>(), any::<u32>()), b in (any::<u32>(), any::<u32>(), any::<u32>())) {
        let va = Version::new(a.0, a.1, a.2);
        let vb = Version::new(b.0, b.1, b.2);
        prop_assert_eq!(va.to_string().parse::<Version>().unwrap(), va);
        prop_assert_eq!(va.cmp(&vb), a.cmp(&b));
    }
}

#[test]
fn a_manifest_signed_with_a_mismatched_key_id_cannot_be_made() {
    let signer = key("signer-2027");
    let other = key("signer-2028");
    let e = manifest(&other).sign(&signer, keyring_v1()).unwrap_err();
    assert!(
        e.to_string().contains("is not the id of the signing key"),
        "{e}"
    );
}

#[test]
fn rejection_messages_say_what_to_do() {
    let signer = key("signer-2027");
    let mut m = manifest(&signer);
    m.expires = ts("2027-05-31T00:00:00Z");
    let e = verify(
        &sign(m, &signer, keyring_v1()),
        &trusted_root(),
        &facts(),
        now(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the manifest expired at 2027-05-31T00:00:00Z (now 2027-06-01T00:00:00Z); the vendor must re-sign it to keep offering this release"
    );
}

proptest! {
    /// Every field type has one spelling: whatever parses prints back as
    /// the same text, so the canonical check cannot be dodged per field.
    #[test]
    fn field_types_accept_only_their_one_spelling(s in "\\PC{0,80}|[0-9a-fA-F.:/TZ-]{0,80}|https://[ -~]{0,60}") {
        use update_manifest::{ArtifactUrl, HardwareRevision, KeyId, Label, Model, Sha256, Timestamp};
        fn check<T: std::str::FromStr + std::fmt::Display>(s: &str) -> Result<(), TestCaseError> {
            if let Ok(v) = s.parse::<T>() {
                prop_assert_eq!(v.to_string(), s);
            }
            Ok(())
        }
        check::<Version>(&s)?;
        check::<Timestamp>(&s)?;
        check::<Sha256>(&s)?;
        check::<KeyId>(&s)?;
        check::<ArtifactUrl>(&s)?;
        check::<Model>(&s)?;
        check::<HardwareRevision>(&s)?;
        check::<Label>(&s)?;
    }

    #[test]
    fn rollout_start_stays_within_the_spread(seed in any::<u16>(), spread in 0u32..=2160) {
        let r = update_manifest::Rollout { start: now(), spread_hours: spread };
        let t = r.start_for(seed);
        prop_assert!(t >= now());
        prop_assert!(t.unix() - now().unix() < i64::from(spread.max(1)) * 3600);
    }
}

/// A manifest naming its SBOM verifies, signs the SBOM's hash (a changed
/// hash is refused), and keeps the URL limit.
#[test]
fn the_sbom_reference_is_signed_and_limited() {
    let signer = key("signer-2027");
    let with_sbom = |urls: usize| {
        let mut m = manifest(&signer);
        m.sbom = Some(update_manifest::Sbom {
            urls: vec![
                "https://updates.example.com/hrh-1/1.1.0/hearth-1.1.0.spdx.json"
                    .parse()
                    .unwrap();
                urls
            ],
            size: 2048,
            sha256: update_manifest::Sha256::digest(b"the sbom"),
        });
        m
    };
    let bytes = sign(with_sbom(1), &signer, keyring_v1());
    let release = verify(&bytes, &trusted_root(), &facts(), now()).unwrap();
    let sbom = release.manifest().sbom.as_ref().unwrap();
    assert_eq!(sbom.size, 2048);

    let other = update_manifest::Sha256::digest(b"another sbom").to_string();
    let tampered = String::from_utf8(bytes).unwrap().replace(
        &update_manifest::Sha256::digest(b"the sbom").to_string(),
        &other,
    );
    assert!(verify(tampered.as_bytes(), &trusted_root(), &facts(), now()).is_err());

    let too_many = with_sbom(5).sign(&signer, keyring_v1()).unwrap_err();
    assert!(too_many.to_string().contains("sbom.urls"), "{too_many}");
}
