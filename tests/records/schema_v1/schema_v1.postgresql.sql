-- The records schema version 1 (before issue 11), as SQLAlchemy emitted it for postgresql.
CREATE TABLE patients (
	id SERIAL NOT NULL, 
	pseudo_id VARCHAR(64) NOT NULL, 
	name VARCHAR(200), 
	birth_date DATE, 
	sex VARCHAR(1), 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT ck_patients_sex CHECK (sex IN ('F', 'M', 'X')), 
	UNIQUE (pseudo_id)
);
CREATE TABLE schema_version (
	version INTEGER NOT NULL, 
	PRIMARY KEY (version)
);
CREATE TABLE audit_events (
	id SERIAL NOT NULL, 
	time TIMESTAMP WITH TIME ZONE NOT NULL, 
	actor VARCHAR(128) NOT NULL, 
	action VARCHAR(16) NOT NULL, 
	patient_id INTEGER, 
	object_type VARCHAR(32), 
	object_id VARCHAR(64), 
	details TEXT NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(patient_id) REFERENCES patients (id)
);
CREATE INDEX ix_audit_events_patient_id ON audit_events (patient_id);
CREATE TABLE exams (
	id SERIAL NOT NULL, 
	patient_id INTEGER NOT NULL, 
	eye VARCHAR(2) NOT NULL, 
	exam_date DATE NOT NULL, 
	modality VARCHAR(16) NOT NULL, 
	image_sha256 VARCHAR(64) NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT ck_exams_eye CHECK (eye IN ('OD', 'OS')), 
	CONSTRAINT ck_exams_modality CHECK (modality IN ('external', 'slit_lamp', 'fundus')), 
	FOREIGN KEY(patient_id) REFERENCES patients (id)
);
CREATE INDEX ix_exams_patient_id ON exams (patient_id);
CREATE TABLE analyses (
	id SERIAL NOT NULL, 
	exam_id INTEGER NOT NULL, 
	model_sha256 VARCHAR(64) NOT NULL, 
	model_name VARCHAR(200) NOT NULL, 
	method VARCHAR(64) NOT NULL, 
	layer VARCHAR(200) NOT NULL, 
	target VARCHAR(64) NOT NULL, 
	prediction VARCHAR(64) NOT NULL, 
	confidence FLOAT NOT NULL, 
	probabilities TEXT NOT NULL, 
	cam BYTEA NOT NULL, 
	attention TEXT, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(exam_id) REFERENCES exams (id)
);
CREATE INDEX ix_analyses_exam_id ON analyses (exam_id);
CREATE TABLE reviews (
	id SERIAL NOT NULL, 
	exam_id INTEGER NOT NULL, 
	version INTEGER NOT NULL, 
	supersedes INTEGER, 
	reviewer VARCHAR(128) NOT NULL, 
	agrees BOOLEAN NOT NULL, 
	finding VARCHAR(16) NOT NULL, 
	grade VARCHAR(16) NOT NULL, 
	notes TEXT NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	signed_at TIMESTAMP WITH TIME ZONE, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_reviews_exam_version UNIQUE (exam_id, version), 
	CONSTRAINT ck_reviews_finding CHECK (finding IN ('normal', 'cataract')), 
	CONSTRAINT ck_reviews_grade CHECK (grade IN ('none', 'mild', 'moderate', 'severe')), 
	CONSTRAINT ck_reviews_status CHECK (status IN ('reviewed', 'signed')), 
	FOREIGN KEY(exam_id) REFERENCES exams (id), 
	FOREIGN KEY(supersedes) REFERENCES reviews (id)
);
CREATE INDEX ix_reviews_exam_id ON reviews (exam_id);
INSERT INTO schema_version (version) VALUES (1);
