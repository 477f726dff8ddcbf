//! Every service's endpoints and their state, refreshed every two seconds.

import { useTranslation } from "react-i18next";
import { useUpstreams, type Service } from "../../api/upstreams";
import { ErrorText } from "../../components/ErrorText";
import { fmt } from "../../format";

function ServiceTable({ service }: { service: Service }) {
  const { t } = useTranslation();
  const titleId = `service-${service.service}`;
  return (
    <section className="card" aria-labelledby={titleId}>
      <h2 id={titleId}>
        {service.service} <span className="muted small">{t("upstreams.strategy", { strategy: service.strategy })}</span>
      </h2>
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">{t("upstreams.address")}</th>
              <th scope="col">{t("upstreams.state")}</th>
              <th scope="col">{t("upstreams.origin")}</th>
              <th scope="col">{t("upstreams.protocol")}</th>
              <th scope="col" className="num">
                {t("upstreams.weight")}
              </th>
              <th scope="col" className="num">
                {t("upstreams.inFlight")}
              </th>
              <th scope="col" className="num">
                {t("upstreams.latency")}
              </th>
              <th scope="col" className="num">
                {t("upstreams.failures")}
              </th>
              <th scope="col" className="num">
                {t("upstreams.ejections")}
              </th>
            </tr>
          </thead>
          <tbody>
            {service.endpoints.map((endpoint) => (
              <tr key={endpoint.address}>
                <th scope="row">{endpoint.address}</th>
                <td>
                  <span className={`pill state-${endpoint.state}`}>{t(`states.${endpoint.state}`)}</span>
                  {endpoint.ejected_for_ms ? (
                    <span className="muted small">
                      {" "}
                      {t("upstreams.ejectedFor", { time: fmt.millis(endpoint.ejected_for_ms) })}
                    </span>
                  ) : null}
                </td>
                <td>{t(`origins.${endpoint.origin}`, { defaultValue: endpoint.origin })}</td>
                <td>{endpoint.protocol}</td>
                <td className="num">{fmt.integer(endpoint.weight)}</td>
                <td className="num">{fmt.integer(endpoint.in_flight)}</td>
                <td className="num">{fmt.millis(endpoint.latency_ewma_ms)}</td>
                <td className="num">{fmt.integer(endpoint.consecutive_failures)}</td>
                <td className="num">{fmt.integer(endpoint.ejections)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {service.endpoints.length === 0 ? <p className="muted">{t("upstreams.noEndpoints")}</p> : null}
    </section>
  );
}

export function UpstreamsPage() {
  const { t } = useTranslation();
  const upstreams = useUpstreams();
  return (
    <>
      <h1>{t("upstreams.title")}</h1>
      <p className="muted">{t("upstreams.intro")}</p>
      <ErrorText error={upstreams.error} />
      {upstreams.isPending ? <p>{t("common.loading")}</p> : null}
      {upstreams.data?.map((service) => (
        <ServiceTable key={service.service} service={service} />
      ))}
      {upstreams.data?.length === 0 ? <p>{t("upstreams.none")}</p> : null}
    </>
  );
}
