#[path = "../../../lab/sqlserver-sim/src/tds/login7.rs"]
pub mod login7;
#[path = "../../../lab/sqlserver-sim/src/tds/packet.rs"]
pub mod packet;
#[path = "../../../lab/sqlserver-sim/src/tds/prelogin.rs"]
pub mod prelogin;
