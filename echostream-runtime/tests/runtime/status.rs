//! Status codes end to end: every one of gRPC's codes a handler answers with reaches the caller
//! as that code, with its message.

use bytes::Bytes;
use echostream_runtime::{Client, Code, Server, Status};

use crate::common::{pair, within};

#[tokio::test]
async fn every_error_code_a_handler_answers_reaches_the_caller() {
    let server = Server::builder().routes(|r| {
        r.rpc("fail", |_, req| async move {
            let number = u32::from(req.data[0]);
            let code = Code::from_u32(number).expect("a known code");
            Err(Status::new(code, format!("failed with {number}")))
        });
    });
    let pair = pair(server, Client::builder()).await;
    for number in 1..=16u32 {
        let code = Code::from_u32(number).expect("gRPC's codes 0..=16 are all known");
        let status = within(
            pair.to_server
                .request("fail", Bytes::from(vec![number as u8])),
        )
        .await
        .expect_err("the handler fails");
        assert_eq!(status.code(), code);
        assert_eq!(status.code().as_u32(), number);
        assert_eq!(status.message(), format!("failed with {number}"));
    }
    let taken = within(pair.to_server.request("fail", Bytes::from_static(&[6])))
        .await
        .expect_err("the handler fails");
    assert_eq!(taken, Status::already_exists("failed with 6"));
}
