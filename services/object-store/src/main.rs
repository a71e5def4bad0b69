use caretrail_object_store::{Application, Config, SERVICE};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load()?;
    let _telemetry = caretrail_platform::telemetry::init(SERVICE, config.service.log_format);
    Application::build(config)
        .await?
        .run_until_stopped()
        .await?;
    Ok(())
}
