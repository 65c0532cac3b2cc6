//! The assignor: balance, stickiness, determinism, heterogeneous subscriptions.

use super::*;

fn topics(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn counts(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs.iter().map(|&(t, n)| (t.to_owned(), n)).collect()
}

/// Runs the assignor over `(id, subscription, previous)` triples.
fn run(
    members: &[(&str, &BTreeSet<String>, &Assignment)],
    partitions: &BTreeMap<String, u32>,
) -> BTreeMap<String, Assignment> {
    let specs: Vec<MemberSpec<'_>> =
        members.iter().map(|&(id, topics, previous)| MemberSpec { id, topics, previous }).collect();
    assign(&specs, partitions)
}

/// Checks that every partition of `partitions` is assigned exactly once, to a subscriber.
fn assert_complete(
    result: &BTreeMap<String, Assignment>,
    subs: &BTreeMap<&str, BTreeSet<String>>,
    partitions: &BTreeMap<String, u32>,
) {
    let mut seen = Assignment::default();
    for (id, set) in result {
        for (t, p) in set.iter() {
            assert!(subs[id.as_str()].contains(t), "{id} got {t}/{p} without subscribing");
            assert!(!seen.contains(t, p), "{t}/{p} assigned twice");
            seen.insert(t, p);
        }
    }
    for (t, &n) in partitions {
        if subs.values().any(|s| s.contains(t)) {
            for p in 0..n {
                assert!(seen.contains(t, p), "{t}/{p} not assigned");
            }
        }
    }
}

fn sizes(result: &BTreeMap<String, Assignment>) -> Vec<usize> {
    result.values().map(Assignment::len).collect()
}

fn moved(before: &BTreeMap<String, Assignment>, after: &BTreeMap<String, Assignment>) -> usize {
    let empty = Assignment::default();
    after.iter().map(|(id, set)| set.difference(before.get(id).unwrap_or(&empty)).len()).sum()
}

#[test]
fn given_equal_subscriptions_when_assigning_from_nothing_then_counts_differ_by_at_most_one() {
    let sub = topics(&["a", "b"]);
    let empty = Assignment::default();
    let partitions = counts(&[("a", 7), ("b", 3)]);
    for n in 1..=7 {
        let ids: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
        let members: Vec<_> = ids.iter().map(|id| (id.as_str(), &sub, &empty)).collect();
        let result = run(&members, &partitions);
        let subs = ids.iter().map(|id| (id.as_str(), sub.clone())).collect();
        assert_complete(&result, &subs, &partitions);
        let s = sizes(&result);
        assert!(s.iter().max().unwrap() - s.iter().min().unwrap() <= 1, "{n} members: {s:?}");
    }
}

#[test]
fn given_three_members_over_twelve_partitions_when_a_fourth_joins_then_exactly_three_move() {
    let sub = topics(&["t"]);
    let partitions = counts(&[("t", 12)]);
    let empty = Assignment::default();
    let three = run(&[("a", &sub, &empty), ("b", &sub, &empty), ("c", &sub, &empty)], &partitions);
    assert_eq!(sizes(&three), vec![4, 4, 4]);
    let four = run(
        &[("a", &sub, &three["a"]), ("b", &sub, &three["b"]), ("c", &sub, &three["c"]), ("d", &sub, &empty)],
        &partitions,
    );
    assert_eq!(sizes(&four), vec![3, 3, 3, 3]);
    assert_eq!(moved(&three, &four), 3, "{three:?} -> {four:?}");
    for id in ["a", "b", "c"] {
        assert!(four[id].difference(&three[id]).is_empty(), "{id} gained partitions it did not have");
    }
}

#[test]
fn given_a_member_leaving_when_reassigning_then_only_its_partitions_move() {
    let sub = topics(&["t"]);
    let partitions = counts(&[("t", 12)]);
    let empty = Assignment::default();
    let four = run(&[("a", &sub, &empty), ("b", &sub, &empty), ("c", &sub, &empty), ("d", &sub, &empty)], &partitions);
    let three = run(&[("a", &sub, &four["a"]), ("b", &sub, &four["b"]), ("c", &sub, &four["c"])], &partitions);
    assert_eq!(sizes(&three), vec![4, 4, 4]);
    assert_eq!(moved(&four, &three), 3);
    for id in ["a", "b", "c"] {
        assert!(four[id].difference(&three[id]).is_empty(), "{id} lost a partition it kept");
    }
}

#[test]
fn given_the_same_input_in_any_order_when_assigning_then_the_result_is_identical() {
    let sub = topics(&["x", "y"]);
    let other = topics(&["y"]);
    let partitions = counts(&[("x", 5), ("y", 9)]);
    let empty = Assignment::default();
    let mut prev = Assignment::default();
    prev.insert("y", 3);
    let forward = run(&[("m1", &sub, &empty), ("m2", &other, &prev), ("m3", &sub, &empty)], &partitions);
    let backward = run(&[("m3", &sub, &empty), ("m2", &other, &prev), ("m1", &sub, &empty)], &partitions);
    assert_eq!(forward, backward);
    assert_eq!(forward, run(&[("m1", &sub, &empty), ("m2", &other, &prev), ("m3", &sub, &empty)], &partitions));
    assert!(forward["m2"].contains("y", 3), "the previous owner keeps its partition");
}

#[test]
fn given_heterogeneous_subscriptions_when_assigning_then_each_gets_only_its_topics_and_load_is_even() {
    let ab = topics(&["a", "b"]);
    let a = topics(&["a"]);
    let b = topics(&["b"]);
    let partitions = counts(&[("a", 6), ("b", 6)]);
    let empty = Assignment::default();
    let result = run(&[("m1", &ab, &empty), ("m2", &a, &empty), ("m3", &b, &empty)], &partitions);
    let subs = [("m1", ab.clone()), ("m2", a.clone()), ("m3", b.clone())].into_iter().collect();
    assert_complete(&result, &subs, &partitions);
    assert_eq!(sizes(&result), vec![4, 4, 4]);
}

#[test]
fn given_a_topic_only_one_member_wants_when_assigning_then_the_shared_topic_goes_to_the_others() {
    let ab = topics(&["a", "b"]);
    let only_a = topics(&["a"]);
    let partitions = counts(&[("a", 4), ("b", 4)]);
    let empty = Assignment::default();
    let result = run(&[("m1", &ab, &empty), ("m2", &only_a, &empty)], &partitions);
    assert_eq!(sizes(&result), vec![4, 4]);
    assert_eq!(result["m2"].len(), 4);
    assert!(result["m1"].iter().all(|(t, _)| t == "b"));
}

#[test]
fn given_missing_topics_and_shrunk_partitions_when_assigning_then_they_are_dropped() {
    let sub = topics(&["t", "ghost"]);
    let mut prev = Assignment::default();
    prev.insert("t", 9); // the topic now has 4 partitions
    prev.insert("ghost", 0); // the topic is gone
    prev.insert("t", 1);
    let partitions = counts(&[("t", 4)]);
    let result = run(&[("m", &sub, &prev)], &partitions);
    let expected: Vec<(&str, u32)> = vec![("t", 0), ("t", 1), ("t", 2), ("t", 3)];
    assert_eq!(result["m"].iter().collect::<Vec<_>>(), expected);
}

#[test]
fn given_a_partition_claimed_twice_when_assigning_then_the_smaller_member_id_keeps_it() {
    let sub = topics(&["t"]);
    let mut prev = Assignment::default();
    prev.insert("t", 0);
    let partitions = counts(&[("t", 2)]);
    let result = run(&[("z", &sub, &prev), ("a", &sub, &prev)], &partitions);
    assert!(result["a"].contains("t", 0));
    assert!(result["z"].contains("t", 1));
}

#[test]
fn given_no_members_or_no_subscribed_topics_when_assigning_then_nothing_is_assigned() {
    assert!(run(&[], &counts(&[("t", 3)])).is_empty());
    let none = topics(&[]);
    let empty = Assignment::default();
    let result = run(&[("m", &none, &empty)], &counts(&[("t", 3)]));
    assert_eq!(result.len(), 1);
    assert!(result["m"].is_empty());
}

#[test]
fn given_random_groups_when_members_come_and_go_then_results_stay_complete_balanced_and_sticky() {
    let mut seed = 0x9e37_79b9_u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let sub = topics(&["a", "b", "c"]);
    let partitions = counts(&[("a", 10), ("b", 7), ("c", 1)]);
    let mut current: BTreeMap<String, Assignment> = BTreeMap::new();
    for round in 0..200 {
        let id = format!("m{}", next(8));
        if current.contains_key(&id) && current.len() > 1 {
            current.remove(&id);
        } else {
            current.insert(id, Assignment::default());
        }
        let members: Vec<_> = current.iter().map(|(id, prev)| (id.as_str(), &sub, prev)).collect();
        let result = run(&members, &partitions);
        let subs = current.keys().map(|id| (id.as_str(), sub.clone())).collect();
        assert_complete(&result, &subs, &partitions);
        let s = sizes(&result);
        assert!(s.iter().max().unwrap() - s.iter().min().unwrap() <= 1, "round {round}: {s:?}");
        // Only the surplus moves: a member that kept some partitions lost at most its surplus.
        let quota = 18_usize.div_ceil(current.len());
        for (id, prev) in &current {
            let kept = prev.intersection(&result[id]).len();
            assert!(kept >= prev.len().min(quota - 1), "round {round}: {id} kept {kept} of {}", prev.len());
        }
        current = result;
    }
}

#[test]
fn assignment_set_operations_keep_no_empty_topics() {
    let mut x = Assignment::default();
    x.insert("t", 1);
    x.insert("u", 2);
    let mut y = Assignment::default();
    y.insert("u", 2);
    let d = x.difference(&y);
    assert_eq!(d.iter().collect::<Vec<_>>(), vec![("t", 1)]);
    assert_eq!(d, Assignment::from_client(&[v1::TopicPartitions { topic: "t".into(), partitions: vec![1] }]));
    assert!(x.intersects(&y) && !d.intersects(&y));
    assert_eq!(x.intersection(&y), y);
    assert_eq!(Assignment::from_internal(&x.to_internal()), x);
    assert_eq!(x.to_client()[0].partitions, vec![1]);
}
