//! The TDS 7.4 wire format (MS-TDS): packets, PRELOGIN, LOGIN7, and the
//! tokens a server sends back. Nothing here knows about SQL or databases.

pub mod login7;
pub mod packet;
pub mod prelogin;
pub mod response;
pub mod rpc;
pub mod token;
pub mod types;
