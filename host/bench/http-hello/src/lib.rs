//! `{"hello":"world"}` for every request, as a wasi:http proxy component.

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

wasi::http::proxy::export!(Hello);

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let headers =
            Fields::from_list(&[("content-type".to_string(), b"application/json".to_vec())])
                .expect("valid header");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("body once");
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().expect("stream once");
        stream
            .blocking_write_and_flush(b"{\"hello\":\"world\"}")
            .expect("write");
        drop(stream);
        OutgoingBody::finish(body, None).expect("finish");
    }
}
