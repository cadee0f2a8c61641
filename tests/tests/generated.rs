//! What the generated types and constants offer, as a user sees them: enum getters and setters,
//! `Bytes` fields, type names, the method constants with the schema's options, and
//! cross-package references in each way of including the code.

use std::time::Duration;

use echostream_runtime::prost::{Message as _, Name};
use echostream_runtime::{Bytes, Delivery, Playout};
use echostream_tests::schemas::{chat, common, e2e, game, iot, maps, media, options, tree, types};
use echostream_tests::{mirrored, scalars};

#[test]
fn enum_fields_have_typed_getters_and_setters() {
    // Singular.
    let mut welcome = chat::v1::Welcome::default();
    assert_eq!(welcome.presence(), chat::v1::Presence::Offline);
    welcome.set_presence(chat::v1::Presence::Online);
    assert_eq!(welcome.presence, chat::v1::Presence::Online as i32);
    assert_eq!(welcome.presence(), chat::v1::Presence::Online);
    // A number the enum does not know (from a newer peer) reads as the default.
    welcome.presence = 7;
    assert_eq!(welcome.presence(), chat::v1::Presence::Offline);
    assert!(chat::v1::Presence::try_from(7).is_err());
    assert_eq!(
        chat::v1::Presence::try_from(1),
        Ok(chat::v1::Presence::Online)
    );

    // Repeated: an iterator of the enum (skipping numbers it does not know), and a typed push.
    let mut sample = options::v1::Sample::default();
    sample.push_levels(options::v1::Level::High);
    sample.levels.push(42);
    sample.push_levels(options::v1::Level::Unspecified);
    let levels: Vec<options::v1::Level> = sample.levels().collect();
    assert_eq!(
        levels,
        [options::v1::Level::High, options::v1::Level::Unspecified]
    );
    assert_eq!(sample.levels, [1, 42, 0]);

    // Optional: the same getter (the default when unset) and setter.
    let mut hello = e2e::v1::Hello::default();
    assert_eq!(hello.last_mood, None);
    assert_eq!(hello.last_mood(), e2e::v1::Mood::Unspecified);
    hello.set_last_mood(e2e::v1::Mood::Happy);
    assert_eq!(hello.last_mood, Some(e2e::v1::Mood::Happy as i32));
    assert_eq!(hello.last_mood(), e2e::v1::Mood::Happy);

    // Nested enum, and the names of values as in the schema.
    let mut leaf = tree::v1::outer::inner::Leaf::default();
    leaf.set_kind(tree::v1::outer::inner::Kind::Leaf);
    leaf.set_mode(tree::v1::outer::Mode::Fast);
    assert_eq!(leaf.kind().as_str_name(), "KIND_LEAF");
    assert_eq!(
        tree::v1::outer::Mode::from_str_name("MODE_FAST"),
        Some(leaf.mode())
    );
}

#[test]
fn bytes_fields_share_the_buffer_they_were_decoded_from() {
    let frame = media::v1::Frame {
        data: Bytes::from(vec![7u8; 4096]),
        keyframe: true,
        ..Default::default()
    };
    let wire = Bytes::from(frame.encode_to_vec());
    let decoded = media::v1::Frame::decode(wire.clone()).expect("decodes");
    assert_eq!(decoded, frame);
    // The payload points into `wire`: no copy.
    let range = wire.as_ptr_range();
    assert!(range.contains(&decoded.data.as_ptr()));
}

#[test]
fn types_know_their_full_names() {
    assert_eq!(chat::v1::Login::full_name(), "chat.v1.Login");
    assert_eq!(tree::v1::outer::Inner::full_name(), "tree.v1.Outer.Inner");
    assert_eq!(common::Attachment::PACKAGE, "common");
}

#[test]
fn method_constants_carry_names_and_schema_options() {
    use chat::v1::{chat_peer, chat_service};
    assert_eq!(chat_service::NAME, "chat.v1.ChatService");
    assert_eq!(chat_service::LOGIN.name(), "chat.v1.ChatService/login");
    assert_eq!(
        chat_service::LOGIN.timeout(),
        Some(Duration::from_millis(2000))
    );
    assert!(!chat_service::LOGIN.idempotent());
    assert!(chat_peer::CONFIRM.idempotent());
    assert_eq!(chat_peer::CONFIRM.timeout(), None);
    assert_eq!(chat_service::TYPING.name(), "chat.v1.ChatService/typing");
    let video = chat_service::VIDEO_FEED;
    assert_eq!(video.delivery(), Delivery::Datagram);
    assert_eq!(
        video.playout(),
        Playout::jitter_buffer(Duration::from_millis(80))
    );
    assert_eq!(video.max_frame_bytes(), 1 << 20);

    assert_eq!(
        game::v1::game_client::STATE.max_frame_bytes(),
        1200,
        "max_frame_bytes from the schema"
    );
    assert_eq!(
        game::v1::game_server::INPUT.playout(),
        Playout::on_arrival(),
        "jitter_ms = 0 plays on arrival"
    );
    let tuned = options::v1::tuned::BOUNDED;
    assert_eq!(tuned.timeout(), Some(Duration::from_millis(2_147_483_647)));
    assert!(options::v1::tuned::OLD.deprecated());
    assert!(options::v1::tuned::NOTIFY.deprecated());
    assert!(!options::v1::tuned::PLAIN.deprecated());
    assert_eq!(options::v1::tuned::ORDERED.max_frame_bytes(), 1);
    assert_eq!(
        iot::control::v1::device::SET_POWER.timeout(),
        Some(Duration::from_millis(1500))
    );
}

#[test]
fn cross_package_references_resolve_in_every_way_of_including() {
    // The whole tree.
    let message = chat::v1::Message {
        attachment: Some(common::Attachment {
            url: "u".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    // One package at a time, in a mirrored tree: its own copy of the types.
    let mirrored_message = mirrored::chat::v1::Message {
        attachment: Some(mirrored::common::Attachment {
            url: "u".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    // Both encode the same bytes.
    assert_eq!(message.encode_to_vec(), mirrored_message.encode_to_vec());
    // A package that refers to no other, alone.
    let all = scalars::AllScalars {
        a_int32: -5,
        ..Default::default()
    };
    let decoded = types::v1::AllScalars::decode(&*all.encode_to_vec()).expect("decodes");
    assert_eq!(decoded.a_int32, -5);
    // Maps of messages from the same package, by qualified name.
    let mut maps = maps::v1::Maps::default();
    maps.qualified_points
        .insert(1, maps::v1::Point { x: 1.0, y: 2.0 });
    assert_eq!(maps.qualified_points[&1].y, 2.0);
}
