use super::*;

#[test]
fn pages_resume_after_the_token() {
    let items: Vec<(String, u32)> = (0..5).map(|i| (format!("k{i}"), i)).collect();
    let (p1, t1) = page(items.clone(), Some(2), None, 100).unwrap();
    assert_eq!(p1, vec![0, 1]);
    let (p2, t2) = page(items.clone(), Some(2), t1.as_deref(), 100).unwrap();
    assert_eq!(p2, vec![2, 3]);
    let (p3, t3) = page(items.clone(), Some(2), t2.as_deref(), 100).unwrap();
    assert_eq!((p3, t3), (vec![4], None));
    assert_eq!(page(items.clone(), None, None, 100).unwrap().0.len(), 5);
    for bad in [Some(0), Some(1001)] {
        assert_eq!(
            page(items.clone(), bad, None, 100).unwrap_err().code,
            "InvalidParameterException"
        );
    }
    assert!(page(items, None, Some("!!"), 100).is_err());
}

#[test]
fn tags_merge_and_are_bounded() {
    let t = |k: &str, v: &str| wire::Tag { key: Some(k.into()), value: Some(v.into()) };
    let merged = merge_tags(&[("a".into(), "1".into())], &[t("b", "2"), t("a", "3")]).unwrap();
    assert_eq!(merged, vec![("a".into(), "3".into()), ("b".into(), "2".into())]);
    assert_eq!(
        merge_tags(&[], &[t("aws:x", "1")]).unwrap_err().code,
        "InvalidTagParameterException"
    );
    assert_eq!(merge_tags(&[], &[t("", "1")]).unwrap_err().code, "InvalidTagParameterException");
    let many: Vec<_> = (0..51).map(|i| t(&format!("k{i}"), "v")).collect();
    assert_eq!(merge_tags(&[], &many).unwrap_err().code, "TooManyTagsException");
}

#[test]
fn repository_policies_must_be_policy_documents() {
    assert!(check_policy_text(r#"{"Version":"2012-10-17","Statement":[]}"#).is_ok());
    for bad in ["", "[]", "{}", "{\"Statement\""] {
        assert_eq!(check_policy_text(bad).unwrap_err().code, "InvalidParameterException", "{bad}");
    }
}
