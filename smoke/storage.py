"""Uploading an import file: a connection string (local Azurite) or an account URL with
``DefaultAzureCredential`` (a deployment; needs Storage Blob Data Contributor on the account)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StorageAccess:
    connection_string: str | None = None
    account_url: str | None = None

    @property
    def given(self) -> bool:
        return bool(self.connection_string or self.account_url)

    def upload(self, container: str, name: str, data: bytes) -> None:
        # Imported here: the SDKs are only needed when the import scenario runs.
        from azure.storage.blob import BlobServiceClient

        if self.connection_string:
            client = BlobServiceClient.from_connection_string(self.connection_string)
            with client:
                client.get_blob_client(container, name).upload_blob(data, overwrite=False)
            return
        if not self.account_url:
            raise ValueError("no storage access given")
        from azure.identity import DefaultAzureCredential

        with (
            DefaultAzureCredential() as credential,
            BlobServiceClient(self.account_url, credential=credential) as client,
        ):
            client.get_blob_client(container, name).upload_blob(data, overwrite=False)
